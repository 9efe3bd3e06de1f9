//! `svc status` as an operator reads it: every role (also those with no instance), each
//! instance's shard, health and lease, and live figures from its `/metrics` (request
//! rate, 5xx count, p99), as a table and as JSON. (The exit code and message when no
//! registry answers are checked in `cli.rs`.)

use std::time::Duration;

use crate::harness::*;
use serde_json::Value;

fn status(args: &[&str]) -> Finished {
    let mut cmd = svc_command();
    cmd.arg("status").args(args);
    run_to_exit(cmd, EXIT_TIMEOUT)
}

/// A registry with the default lease (3 s), so an instance killed by the test stays in
/// the catalog long enough for `svc status` to report it as down.
fn registry(sandbox: &Sandbox) -> Svc {
    let mut cmd = svc_command();
    cmd.arg("run")
        .args(["--role", "registry", "--instance-id", "reg-s"])
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(sandbox.data_dir());
    sandbox.start_cmd(cmd, "registry", "reg-s")
}

fn instance<'a>(report: &'a Value, id: &str) -> &'a Value {
    report["instances"]
        .as_array()
        .and_then(|all| all.iter().find(|i| i["instance_id"] == id))
        .unwrap_or_else(|| panic!("no {id} in {report}"))
}

#[tokio::test]
async fn status_shows_health_lease_and_live_figures_of_every_instance() {
    let sandbox = Sandbox::new();
    let registry = registry(&sandbox);
    let gateway = sandbox.start("gateway", "gw-s", &registry.url);
    let mut payments = sandbox.start("payments", "pay-s", &registry.url);
    wait_registered(&registry, &[&gateway, &payments]).await;

    // Traffic that fails: no inventory runs, so the gateway answers 503, during the
    // whole of svc status's window.
    let url = format!("{}/api/v1/products/tea", gateway.url);
    let load = tokio::spawn(async move {
        let client = http();
        for _ in 0..150 {
            let _ = client.get(&url).send().await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    tokio::time::sleep(Duration::from_millis(200)).await;
    let dead = dead_url();
    let registries = format!("{},{dead}", registry.url);
    let out = tokio::task::spawn_blocking(move || {
        status(&["--registry", &registries, "--json", "--window", "1s"])
    })
    .await
    .unwrap();
    load.abort();
    assert_eq!(out.code(), Some(0), "{out:?}");
    let report: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {}", out.stdout));

    assert_eq!(report["registry"], registry.url.as_str(), "{report}");
    assert_eq!(report["registries"][0]["health"], "ready", "{report}");
    assert_eq!(report["registries"][1]["url"], dead.as_str(), "{report}");
    assert_ne!(report["registries"][1]["health"], "ready", "{report}");

    let gw = instance(&report, "gw-s");
    assert_eq!(gw["health"], "ready", "{gw}");
    assert_eq!(gw["address"], gateway.internal_url.as_str());
    let rate = gw["requests_per_s"].as_f64().unwrap_or_default();
    assert!(rate > 10.0, "requests/s {rate}: {gw}");
    assert!(gw["errors_5xx"].as_u64().unwrap_or_default() >= 10, "{gw}");
    assert!(gw["p99_ms"].as_f64().is_some_and(|p| p > 0.0), "{gw}");
    assert!(
        gw["lease_age_ms"].as_u64().is_some_and(|a| a < 3000),
        "{gw}"
    );

    let pay = instance(&report, "pay-s");
    assert_eq!(pay["shard"], "0", "{pay}");
    assert_eq!(pay["health"], "ready", "{pay}");
    // Only svc status's own scrapes reached it, and those are not traffic.
    assert_eq!(pay["requests_per_s"], 0.0, "{pay}");
    assert_eq!(pay["p99_ms"], Value::Null, "{pay}");

    let roles = report["roles"].as_array().unwrap();
    let role = |name: &str| {
        roles
            .iter()
            .find(|r| r["role"] == name)
            .unwrap_or_else(|| panic!("no role {name} in {report}"))
    };
    assert_eq!(
        (
            role("gateway")["instances"].as_u64(),
            role("gateway")["ready"].as_u64()
        ),
        (Some(1), Some(1))
    );
    assert_eq!(role("orders")["instances"], 0, "{report}");

    // An instance that died but still holds its lease: down, with no figures.
    payments.kill();
    let out = status(&["--registry", &registry.url, "--window", "100ms"]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let row = |id: &str| -> Vec<String> {
        out.stdout
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(id))
            .unwrap_or_else(|| panic!("no row for {id}:\n{}", out.stdout))
            .split_whitespace()
            .map(str::to_string)
            .collect()
    };
    assert_eq!(
        row("pay-s")[..5],
        [
            "payments",
            "pay-s",
            payments.url.as_str(),
            "0",
            "unreachable"
        ]
    );
    assert_eq!(row("gw-s")[4], "ready", "{}", out.stdout);
    assert!(out.stdout.contains("pay-s: no figures"), "{}", out.stdout);
    assert!(
        out.stdout
            .lines()
            .any(|l| l.starts_with("orders") && l.contains("(no instance registered)")),
        "{}",
        out.stdout
    );
}
