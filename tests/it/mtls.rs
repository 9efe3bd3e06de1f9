//! Mutual TLS and identities: who can reach an internal endpoint at all, and what a
//! verified role may do.
//!
//! * A client without a certificate, with a self-signed one, with one from another CA
//!   or with an expired one is refused at the handshake by the registry and by a role —
//!   with this crate's client and with `curl` / `openssl s_client`, as an outsider
//!   would try.
//! * A valid notifications certificate cannot register as payments (nor as itself at a
//!   host its certificate does not name), renew or remove a payments lease, nor
//!   authorize a payment (403 with a problem body, logged with the caller's identity).
//! * A caller refuses a callee whose certificate names another role.

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::*;
use reqwest::StatusCode;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};
use svc_platform::tls::pki;

/// A client trusting the test CA and presenting `identity` (PEM cert + key), if any.
fn client_with(identity: Option<(&str, &str)>) -> reqwest::Client {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    for ca in CertificateDer::pem_file_iter(test_pki().join("ca.crt")).unwrap() {
        roots.add(ca.unwrap()).unwrap();
    }
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let config = match identity {
        None => builder.with_no_client_auth(),
        Some((cert, key)) => builder
            .with_client_auth_cert(
                CertificateDer::pem_slice_iter(cert.as_bytes())
                    .collect::<Result<Vec<_>, _>>()
                    .unwrap(),
                PrivateKeyDer::from_pem_slice(key.as_bytes()).unwrap(),
            )
            .unwrap(),
    };
    reqwest::Client::builder()
        .use_preconfigured_tls(config)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(5))
        .build()
        .unwrap()
}

fn orders_params() -> rcgen::CertificateParams {
    let mut params =
        rcgen::CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()])
            .unwrap();
    params.subject_alt_names.push(rcgen::SanType::URI(
        rcgen::string::Ia5String::try_from("spiffe://svc/role/orders").unwrap(),
    ));
    params
}

/// A certificate naming the orders role, signed by nobody but itself.
fn self_signed() -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = orders_params().self_signed(&key).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// An orders certificate from the test CA that expired last year.
fn expired() -> (String, String) {
    let ca_pem = std::fs::read_to_string(test_pki().join("ca.crt")).unwrap();
    let ca_key =
        rcgen::KeyPair::from_pem(&std::fs::read_to_string(test_pki().join("ca.key")).unwrap())
            .unwrap();
    let issuer = rcgen::Issuer::from_ca_cert_pem(&ca_pem, ca_key).unwrap();
    let mut params = orders_params();
    params.not_before = rcgen::date_time_ymd(2024, 1, 1);
    params.not_after = rcgen::date_time_ymd(2025, 1, 1);
    let key = rcgen::KeyPair::generate().unwrap();
    let cert = params.signed_by(&key, &issuer).unwrap();
    (cert.pem(), key.serialize_pem())
}

/// An orders certificate from a CA of its own (another cluster, or an attacker's).
fn foreign(dir: &std::path::Path) -> (String, String) {
    pki::ensure_dev_pki(dir, &["orders"]).unwrap();
    (
        std::fs::read_to_string(dir.join("orders.crt")).unwrap(),
        std::fs::read_to_string(dir.join("orders.key")).unwrap(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outsiders_are_refused_at_the_handshake() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let payments = sandbox.start("payments", "pay-0", &registry.url);
    let targets = [
        format!("{}/v1/catalog", registry.url),
        format!("{}/v1/instances", registry.url),
        format!("{}/v1/payments/ord-0-x/authorize", payments.url),
        format!("{}/metrics", payments.url),
    ];
    // The same requests with a valid certificate get an answer: the refusals below are
    // about the certificate, nothing else.
    let valid = http().get(&targets[0]).send().await.unwrap();
    assert_eq!(valid.status(), StatusCode::OK);

    let foreign_dir = sandbox.dir.path().join("foreign-ca");
    let strangers = [
        ("no certificate", None),
        ("self-signed", Some(self_signed())),
        ("another CA", Some(foreign(&foreign_dir))),
        ("expired", Some(expired())),
    ];
    for (what, identity) in &strangers {
        let client = client_with(identity.as_ref().map(|(c, k)| (c.as_str(), k.as_str())));
        for url in &targets {
            let answer = client.post(url).json(&json!({})).send().await;
            assert!(
                answer.is_err(),
                "{what}: {url} answered {:?}",
                answer.map(|r| r.status())
            );
        }
    }
    // Nothing got in: the registry still lists only payments.
    let c = catalog(&registry).await;
    assert_eq!(members(&c).len(), 1, "{c}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn curl_and_openssl_without_a_cluster_certificate_get_nothing() {
    let Some(curl) = tools::find_tool(
        &["curl"],
        "SVC_CURL",
        "SVC_REQUIRE_CURL",
        "apt-get install -y curl",
    ) else {
        return;
    };
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let pki = test_pki();
    let url = format!("{}/v1/catalog", registry.url);
    let ca = pki.join("ca.crt");

    let curl_get = |extra: &[&std::ffi::OsStr]| {
        Command::new(&curl)
            .args([
                "-sS",
                "-o",
                "/dev/null",
                "-w",
                "%{http_code}",
                "--max-time",
                "5",
            ])
            .arg("--cacert")
            .arg(&ca)
            .args(extra)
            .arg(&url)
            .output()
            .unwrap()
    };
    let without = curl_get(&[]);
    assert!(
        !without.status.success(),
        "curl without a certificate: {without:?}"
    );
    let foreign_dir = sandbox.dir.path().join("foreign-ca");
    foreign(&foreign_dir);
    let stranger = curl_get(&[
        "--cert".as_ref(),
        foreign_dir.join("orders.crt").as_os_str(),
        "--key".as_ref(),
        foreign_dir.join("orders.key").as_os_str(),
    ]);
    assert!(
        !stranger.status.success(),
        "curl with a foreign certificate: {stranger:?}"
    );
    let operator = curl_get(&[
        "--cert".as_ref(),
        pki.join("operator.crt").as_os_str(),
        "--key".as_ref(),
        pki.join("operator.key").as_os_str(),
    ]);
    assert_eq!(
        String::from_utf8_lossy(&operator.stdout),
        "200",
        "{operator:?}"
    );

    if let Some(openssl) = tools::find_tool(
        &["openssl"],
        "SVC_OPENSSL",
        "SVC_REQUIRE_OPENSSL",
        "apt-get install -y openssl",
    ) {
        // TLS 1.3: the server refuses the missing certificate after the client's
        // Finished, so the request written afterwards never gets an HTTP answer.
        let mut child = Command::new(openssl)
            .args([
                "s_client",
                "-connect",
                &format!("127.0.0.1:{}", registry.port()),
            ])
            .arg("-CAfile")
            .arg(&ca)
            .args(["-tls1_3", "-quiet", "-no_ign_eof"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        use std::io::Write as _;
        // Keep stdin open: s_client must stay to read the server's alert.
        let mut stdin = child.stdin.take().unwrap();
        let _ =
            stdin.write_all(b"GET /v1/catalog HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while child.try_wait().unwrap().is_none() {
            if std::time::Instant::now() > deadline {
                let _ = child.kill();
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(stdin);
        let out = child.wait_with_output().unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            !stdout.contains("HTTP/1.1"),
            "s_client got an answer: {stdout}"
        );
        assert!(
            stderr.contains("alert certificate required"),
            "s_client saw no refusal: {stderr}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_notifications_certificate_cannot_act_as_payments() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let payments = sandbox.start("payments", "pay-0", &registry.url);
    wait_registered(&registry, &[&payments]).await;
    let notifications = client_as("notifications");

    let claim = |role: &str| {
        json!({
            "role": role, "instance_id": "impostor", "address": "https://127.0.0.1:9",
            "version": "0.1.0", "metadata": { "shard": "0" }
        })
    };
    let register = format!("{}/v1/instances", registry.url);
    let res = notifications
        .post(&register)
        .json(&claim("payments"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "register as payments").await;
    let lease = format!("{}/v1/instances/payments/pay-0/lease", registry.url);
    assert_problem(
        notifications.put(&lease).send().await.unwrap(),
        403,
        "renew",
    )
    .await;
    let remove = format!("{}/v1/instances/payments/pay-0", registry.url);
    assert_problem(
        notifications.delete(&remove).send().await.unwrap(),
        403,
        "deregister",
    )
    .await;
    // Nor as its own role at a host its certificate does not name (another machine's).
    let mut elsewhere = claim("notifications");
    elsewhere["address"] = json!("https://10.1.2.3:9");
    let res = notifications
        .post(&register)
        .json(&elsewhere)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(res, 403, "register at another host").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("10.1.2.3"),
        "{problem}"
    );
    // Its own role, on its own host, it may register as.
    let own = notifications
        .post(&register)
        .json(&claim("notifications"))
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), StatusCode::OK);
    assert!(
        lists(&catalog(&registry).await, &payments),
        "payments still registered"
    );

    let authorize = format!("{}/v1/payments/ord-0-x/authorize", payments.url);
    let body = json!({ "amount_minor": 100, "currency": "EUR", "card": "4242424242424242" });
    let res = notifications
        .post(&authorize)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "authorize as notifications").await;
    payments.wait_for_log("refused: caller not allowed", Duration::from_secs(5));
    let refusal = payments
        .stderr()
        .lines()
        .find(|l| l.contains("refused: caller not allowed"))
        .map(str::to_string)
        .unwrap_or_default();
    assert!(refusal.contains("notifications"), "{refusal}");
    // The role the manifest names is let through to the handler.
    let res = client_as("orders")
        .post(&authorize)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_ne!(res.status(), StatusCode::FORBIDDEN);
    // An undeclared endpoint is not served to anyone: 405 naming what the path
    // takes, 404 for a path nothing serves.
    let res = client_as("orders")
        .delete(format!("{}/v1/payments/ord-0-x", payments.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::METHOD_NOT_ALLOWED);
    assert_eq!(header(&res, "allow").as_deref(), Some("GET"));
    let res = client_as("orders")
        .get(format!("{}/v1/payments/ord-0-x/refund", payments.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), StatusCode::NOT_FOUND);
}

async fn assert_problem(res: reqwest::Response, status: u16, what: &str) -> Value {
    assert_eq!(res.status().as_u16(), status, "{what}");
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("application/problem+json"),
        "{what}"
    );
    let body: Value = res.json().await.unwrap();
    assert_eq!(body["status"], status, "{what}: {body}");
    body
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_caller_refuses_a_callee_whose_certificate_names_another_role() {
    let sandbox = Sandbox::new();
    let notifications = sandbox.start("notifications", "not-0", &dead_url());
    let payments = sandbox.start("payments", "pay-0", &dead_url());
    // What orders' client for its payments dependency does (one pool per dependency).
    let to_payments =
        svc_platform::tls::http_client_builder(Some(&material("orders")), Some("payments"))
            .build()
            .unwrap();
    let metrics = |svc: &Svc| format!("{}/metrics", svc.url);
    let err = to_payments
        .get(metrics(&notifications))
        .send()
        .await
        .expect_err("a notifications instance passed for payments");
    let chain = format!("{err:?}");
    assert!(chain.contains("not `payments`"), "{chain}");
    let ok = to_payments.get(metrics(&payments)).send().await.unwrap();
    assert_eq!(ok.status(), StatusCode::OK);
}
