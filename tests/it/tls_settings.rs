//! The TLS settings an operator touches: start-up errors that name the file and the key,
//! `tls.insecure` (explicit and loud), and the gateway's public listener — TLS with a
//! public certificate when given one, and nothing but the public API on it.

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::*;
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;

#[test]
fn missing_or_mismatched_certificates_stop_start_up_naming_the_file() {
    let sandbox = Sandbox::new();
    let empty = sandbox.dir.path().join("no-certs");
    std::fs::create_dir_all(&empty).unwrap();
    let mut cmd = sandbox.run_command("orders", "ord-0", &dead_url());
    cmd.arg("--tls-dir").arg(&empty);
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    // 2: a configuration problem, which systemd does not restart in a loop.
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    let cert = empty.join("orders.crt");
    assert!(out.stderr.contains(&show(&cert)), "{}", out.stderr);
    assert!(out.stderr.contains("tls.dir"), "{}", out.stderr);

    // Another role's certificate is not this instance's identity.
    let config = sandbox.write_file(
        "wrong.yaml",
        &format!(
            "tls:\n  cert: {0}/payments.crt\n  key: {0}/payments.key\n",
            test_pki().display()
        ),
    );
    let mut cmd = sandbox.run_command("orders", "ord-0", &dead_url());
    cmd.arg("--config").arg(config);
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_ne!(out.code(), Some(0), "{}", out.stderr);
    assert!(
        out.stderr
            .contains("is for role `payments`, this instance runs `orders`"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("PRIVATE KEY"), "{}", out.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn insecure_must_be_asked_for_and_says_so() {
    let sandbox = Sandbox::new();
    // An http:// registry with TLS on is a config error, not a silent downgrade.
    let cmd = sandbox.run_command("orders", "ord-0", "http://127.0.0.1:7700");
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("registries[0]"), "{}", out.stderr);
    assert!(out.stderr.contains("https://"), "{}", out.stderr);

    let config = sandbox.write_file(
        "insecure.yaml",
        "tls:\n  insecure: true\nregistries: [\"http://127.0.0.1:7700\"]\n",
    );
    let mut cmd = svc_command();
    cmd.arg("run")
        .args([
            "--role",
            "registry",
            "--listen",
            "127.0.0.1:0",
            "--instance-id",
            "reg-0",
        ])
        .arg("--data-dir")
        .arg(sandbox.data_dir())
        .arg("--config")
        .arg(&config);
    let registry = Svc::spawn(cmd, "registry").unwrap();
    assert!(registry.url.starts_with("http://"), "{}", registry.url);
    registry.wait_for_log("PLAIN HTTP", Duration::from_secs(5));
    let mut cmd = sandbox.run_command("inventory", "inv-0", &registry.url);
    cmd.arg("--config").arg(&config);
    let inventory = sandbox.start_cmd(cmd, "inventory", "inv-0");
    // Plain HTTP, and no identity needed for what mutual TLS would refuse.
    let res = plain_client()
        .post(format!("{}/v1/products", inventory.url))
        .json(&product("tea"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
}

/// A gateway serving its public API over TLS with `cert` (here: the test CA's gateway
/// certificate, standing in for one the public trusts).
fn tls_gateway(sandbox: &Sandbox, registry: &Svc) -> Svc {
    let config = sandbox.write_file(
        "public.yaml",
        &format!(
            "tls:\n  public_cert: {0}/gateway.crt\n  public_key: {0}/gateway.key\n",
            test_pki().display()
        ),
    );
    let mut cmd = sandbox.run_command("gateway", "gw-0", &registry.url);
    cmd.arg("--config").arg(config);
    sandbox.start_cmd(cmd, "gateway", "gw-0")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_public_listener_serves_the_api_only_over_tls_when_given_a_certificate() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let inventory = sandbox.start("inventory", "inv-0", &registry.url);
    let gateway = tls_gateway(&sandbox, &registry);
    assert!(gateway.url.starts_with("https://"), "{}", gateway.url);
    wait_peers(&gateway, &[&inventory]).await;

    // A browser-like client: trusts the CA, has no client certificate, sends a key.
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(test_pki().join("ca.crt")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let public = reqwest::Client::builder()
        .use_preconfigured_tls(
            rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
                rustls::crypto::ring::default_provider(),
            ))
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth(),
        )
        .build()
        .unwrap();
    let products = format!("{}/api/v1/products", gateway.url);
    let res = public
        .post(&products)
        .bearer_auth(TEST_API_KEY)
        .json(&product("tea"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::CREATED);
    // Plain HTTP on the TLS port gets no API.
    let plain = reqwest::Client::new()
        .get(products.replace("https://", "http://"))
        .bearer_auth(TEST_API_KEY)
        .send()
        .await;
    assert!(plain.map(|r| !r.status().is_success()).unwrap_or(true));

    // Health, metrics and the peer view are not on the public listener...
    for path in ["/health/ready", "/health/live", "/metrics", "/v1/peers"] {
        let res = public
            .get(format!("{}{path}", gateway.url))
            .bearer_auth(TEST_API_KEY)
            .send()
            .await
            .unwrap();
        assert_eq!(
            res.status(),
            StatusCode::NOT_FOUND,
            "{path} on the public listener"
        );
        let body = res.text().await.unwrap();
        assert!(
            !body.contains("inv-0") && !body.contains("http_server"),
            "{body}"
        );
    }
    // ...but on the internal one, for cluster identities only.
    let metrics = http()
        .get(format!("{}/metrics", gateway.internal_url))
        .send()
        .await
        .unwrap();
    assert_eq!(metrics.status(), StatusCode::OK);
    assert!(public
        .get(format!("{}/metrics", gateway.internal_url))
        .send()
        .await
        .is_err());
}

#[test]
fn a_client_that_never_finishes_its_request_head_is_disconnected() {
    let sandbox = Sandbox::new();
    let config = sandbox.write_file("slow.yaml", "gateway:\n  header_read_timeout: 1s\n");
    let mut cmd = sandbox.run_command("gateway", "gw-0", &dead_url());
    cmd.arg("--config").arg(config);
    let gateway = sandbox.start_cmd(cmd, "gateway", "gw-0");
    let addr = gateway.url.trim_start_matches("http://").to_string();
    let mut stream = TcpStream::connect(&addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let started = Instant::now();
    // Half a request head, then nothing: a slow-loris client.
    stream
        .write_all(b"GET /api/v1/products HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let waited = started.elapsed();
    assert!(
        waited >= Duration::from_millis(900) && waited < Duration::from_secs(5),
        "closed after {waited:?}"
    );
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
}
