//! Certificate rotation without a restart: new files on disk (noticed by their change,
//! or at once on SIGHUP) are what new connections see, while a connection opened
//! before keeps working; a broken file keeps the certificate in use.

use std::path::Path;
use std::time::Duration;

use crate::harness::*;
use nix::sys::signal::Signal;
use svc_platform::tls::{client_config, pki};

/// A payments instance using `dir`, checking its files every `reload_interval`.
fn start_payments(sandbox: &Sandbox, id: &str, dir: &Path, reload_interval: &str) -> Svc {
    let config = sandbox.write_file(
        &format!("{id}.yaml"),
        &format!("tls:\n  reload_interval: {reload_interval}\n"),
    );
    let mut cmd = sandbox.run_command("payments", id, &dead_url());
    cmd.arg("--tls-dir").arg(dir).arg("--config").arg(config);
    sandbox.start_cmd(cmd, "payments", id)
}

fn client(pooled: bool) -> reqwest::Client {
    let mut builder = reqwest::Client::builder()
        .use_preconfigured_tls(client_config(&material("orders")))
        .tls_info(true)
        .timeout(Duration::from_secs(5));
    if !pooled {
        builder = builder.pool_max_idle_per_host(0);
    }
    builder.build().unwrap()
}

fn reissue(dir: &Path) {
    let mut req = pki::IssueRequest::new("payments", &["localhost", "127.0.0.1"]);
    req.force = true;
    pki::issue(dir, &req).unwrap();
}

/// Waits until a fresh connection to `url` is served a certificate other than `old`.
async fn wait_new_cert(url: &str, old: &[u8]) -> Vec<u8> {
    wait_for("the new certificate", Duration::from_secs(10), || async {
        let cert = served_cert(&client(false), url).await?;
        if cert == old {
            Err("still the old certificate".to_string())
        } else {
            Ok(cert)
        }
    })
    .await
    .0
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn new_files_reach_new_connections_and_open_ones_keep_working() {
    let sandbox = Sandbox::new();
    let dir = own_pki(&sandbox);
    let payments = start_payments(&sandbox, "pay-0", &dir, "200ms");
    let url = format!("{}/health/live", payments.url);
    let pooled = client(true);
    let first = served_cert(&pooled, &url).await.unwrap();

    reissue(&dir);
    let second = wait_new_cert(&url, &first).await;
    payments.wait_for_log("tls certificates reloaded", Duration::from_secs(5));
    // The connection opened before the rotation is still up, with what it began with.
    assert_eq!(served_cert(&pooled, &url).await.unwrap(), first);

    // A broken file is not taken: the instance keeps serving the certificate it has.
    std::fs::write(dir.join("payments.crt"), "not a certificate").unwrap();
    payments.wait_for_log("tls certificates not reloaded", Duration::from_secs(5));
    assert_eq!(served_cert(&client(false), &url).await.unwrap(), second);
    assert!(
        !payments.stderr().contains("PRIVATE KEY"),
        "a log line shows key material"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_at_once() {
    let sandbox = Sandbox::new();
    let dir = own_pki(&sandbox);
    // Files are checked hourly: only the signal can explain a quick reload.
    let payments = start_payments(&sandbox, "pay-0", &dir, "1h");
    let url = format!("{}/health/live", payments.url);
    let first = served_cert(&client(false), &url).await.unwrap();
    reissue(&dir);
    payments.signal(Signal::SIGHUP);
    wait_new_cert(&url, &first).await;
    // Still serving after the signal (it answered above), and it says why it reloaded.
    payments.wait_for_log("tls certificates reloaded", Duration::from_secs(5));
}
