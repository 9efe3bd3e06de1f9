//! What the gateway reads besides its own certificates also reloads without a restart:
//! the API keys file (a key added is let in, a key removed is refused) and the public
//! listener's certificate (new connections get the new one), when the files change or
//! at once on SIGHUP; a broken file keeps what is in use and says so.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;
use nix::sys::signal::Signal;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use svc::roles::gateway::guard::{generate_key, hash_key};
use svc_platform::tls::pki;

/// A key and the entry of the keys file that grants it every scope.
struct Key {
    key: String,
    entry: String,
}

fn key(name: &str) -> Key {
    let key = generate_key();
    let entry = format!(
        "- name: {name}\n  sha256: {}\n  scopes: [products:read, products:write, orders:read, orders:write]\n",
        hash_key(&key)
    );
    Key { key, entry }
}

/// Replaces `path` whole (write aside, then rename), as an operator should.
fn replace(path: &Path, text: &str) {
    let aside = path.with_extension("new");
    std::fs::write(&aside, text).unwrap();
    std::fs::rename(&aside, path).unwrap();
}

/// A registry, an inventory, and a gateway reading `keys_file`, checking its files every
/// `reload_interval`.
struct Keyed {
    _registry: Svc,
    _inventory: Svc,
    gateway: Svc,
}

async fn keyed_cluster(sandbox: &Sandbox, keys_file: &Path, reload_interval: &str) -> Keyed {
    let registry = sandbox.start_registry();
    let inventory = sandbox.start("inventory", "inv-0", &registry.url);
    let config = sandbox.write_file(
        "gateway.yaml",
        &format!("tls:\n  reload_interval: {reload_interval}\n"),
    );
    let mut cmd = sandbox.run_command("gateway", "gw-0", &registry.url);
    // Explicit, over the harness's SVC_API_KEYS_FILE.
    cmd.arg("--config")
        .arg(config)
        .arg("--api-keys-file")
        .arg(keys_file);
    let gateway = sandbox.start_cmd(cmd, "gateway", "gw-0");
    wait_peers(&gateway, &[&inventory]).await;
    Keyed {
        _registry: registry,
        _inventory: inventory,
        gateway,
    }
}

/// The status of a product listing asked for with `key`.
async fn status_with(gateway: &Svc, key: &Key) -> Result<u16, String> {
    http()
        .get(format!("{}/api/v1/products", gateway.url))
        .bearer_auth(&key.key)
        .send()
        .await
        .map(|res| res.status().as_u16())
        .map_err(|e| e.to_string())
}

/// Waits until requests with `key` are answered `status`.
async fn wait_status(gateway: &Svc, key: &Key, status: u16) {
    wait_for(
        &format!("answer {status}"),
        Duration::from_secs(10),
        || async {
            match status_with(gateway, key).await? {
                s if s == status => Ok(()),
                other => Err(format!("got {other}")),
            }
        },
    )
    .await;
}

fn assert_no_secret_logged(gateway: &Svc, keys: &[&Key]) {
    let log = gateway.stderr();
    for k in keys {
        assert!(!log.contains(&k.key), "a key was logged:\n{log}");
        assert!(
            !log.contains(&hash_key(&k.key)),
            "a key's hash was logged:\n{log}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_added_to_the_file_get_in_and_keys_removed_are_refused() {
    let sandbox = Sandbox::new();
    let (first, second) = (key("first"), key("second"));
    let keys_file = sandbox.write_file("api-keys.yaml", &first.entry);
    let c = keyed_cluster(&sandbox, &keys_file, "200ms").await;
    assert_eq!(status_with(&c.gateway, &first).await, Ok(200));
    assert_eq!(status_with(&c.gateway, &second).await, Ok(401));

    // A key appended is let in within a few checks, and the log names it.
    replace(&keys_file, &format!("{}{}", first.entry, second.entry));
    wait_status(&c.gateway, &second, 200).await;
    c.gateway
        .wait_for_log("api keys reloaded", Duration::from_secs(5));
    let log = c.gateway.stderr();
    let reloaded = log
        .lines()
        .find(|l| l.contains("api keys reloaded"))
        .unwrap();
    assert!(reloaded.contains("first,second"), "{reloaded}");

    // A broken file is not taken: the keys in use stay, and a warning says why.
    replace(&keys_file, &format!("{}- name: [oops\n", first.entry));
    c.gateway
        .wait_for_log("api keys not reloaded", Duration::from_secs(5));
    assert_eq!(status_with(&c.gateway, &first).await, Ok(200));
    assert_eq!(status_with(&c.gateway, &second).await, Ok(200));

    // A key removed is refused from the next check on; the other stays.
    replace(&keys_file, &second.entry);
    wait_status(&c.gateway, &first, 401).await;
    assert_eq!(status_with(&c.gateway, &second).await, Ok(200));
    assert_no_secret_logged(&c.gateway, &[&first, &second]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_keys_at_once() {
    let sandbox = Sandbox::new();
    let (first, second) = (key("first"), key("second"));
    let keys_file = sandbox.write_file("api-keys.yaml", &first.entry);
    // Files are checked hourly: only the signal can explain a quick reload.
    let c = keyed_cluster(&sandbox, &keys_file, "1h").await;
    replace(&keys_file, &format!("{}{}", first.entry, second.entry));
    assert_eq!(status_with(&c.gateway, &second).await, Ok(401));
    c.gateway.signal(Signal::SIGHUP);
    wait_status(&c.gateway, &second, 200).await;
    c.gateway
        .wait_for_log("api keys reloaded", Duration::from_secs(5));
    assert_eq!(status_with(&c.gateway, &first).await, Ok(200));
    assert_no_secret_logged(&c.gateway, &[&first, &second]);
}

/// A private copy of the test PKI with a public certificate `public.crt` / `.key` (from
/// the test CA, standing in for one the public trusts).
fn own_pki_with_public(sandbox: &Sandbox) -> PathBuf {
    let dir = own_pki(sandbox);
    issue_public(&dir);
    dir
}

fn issue_public(dir: &Path) {
    let mut req = pki::IssueRequest::new("gateway", &["localhost", "127.0.0.1"]);
    req.name = "public".to_string();
    req.force = true;
    pki::issue(dir, &req).unwrap();
}

/// A browser-like client: trusts the CA in `dir`, presents no certificate.
fn public_client(dir: &Path, pooled: bool) -> reqwest::Client {
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(dir.join("ca.crt")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .tls_info(true)
        .timeout(Duration::from_secs(5));
    if !pooled {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_public_certificate_reaches_new_connections() {
    let sandbox = Sandbox::new();
    let dir = own_pki_with_public(&sandbox);
    let config = sandbox.write_file(
        "public.yaml",
        &format!(
            "tls:\n  public_cert: {0}/public.crt\n  public_key: {0}/public.key\n  reload_interval: 200ms\n",
            dir.display()
        ),
    );
    let mut cmd = sandbox.run_command("gateway", "gw-0", &dead_url());
    cmd.arg("--config").arg(config);
    let gateway = sandbox.start_cmd(cmd, "gateway", "gw-0");
    assert!(gateway.url.starts_with("https://"), "{}", gateway.url);
    // Public, so no key needed to see which certificate is served.
    let url = format!("{}/api/v1/openapi.json", gateway.url);
    let pooled = public_client(&dir, true);
    let first = served_cert(&pooled, &url).await.unwrap();

    // A broken file is not taken: new connections still get the certificate in use.
    let good = std::fs::read(dir.join("public.crt")).unwrap();
    replace(&dir.join("public.crt"), "not a certificate");
    gateway.wait_for_log("tls certificates not reloaded", Duration::from_secs(5));
    assert_eq!(
        served_cert(&public_client(&dir, false), &url)
            .await
            .unwrap(),
        first
    );
    replace(&dir.join("public.crt"), &String::from_utf8(good).unwrap());

    // A new certificate: new connections get it, the one opened before keeps the old.
    issue_public(&dir);
    wait_for("the new certificate", Duration::from_secs(10), || async {
        let cert = served_cert(&public_client(&dir, false), &url).await?;
        if cert == first {
            Err("still the old certificate".to_string())
        } else {
            Ok(())
        }
    })
    .await;
    gateway.wait_for_log("tls certificates reloaded", Duration::from_secs(5));
    assert_eq!(served_cert(&pooled, &url).await.unwrap(), first);
    assert!(
        !gateway.stderr().contains("PRIVATE KEY"),
        "a log line shows key material"
    );
}
