//! Several registries: instances register and renew at every one, read from any that
//! answers, and a registry that comes back empty is refilled within a renewal interval.

use std::time::Duration;

use crate::harness::*;

/// Starts registry `id` on `port` (0: any) with its own data dir (so a restart with a
/// fresh dir really comes back empty).
fn registry(sandbox: &Sandbox, id: &str, port: u16, dir: &str) -> Svc {
    let mut cmd = svc_command();
    cmd.arg("run")
        .args(["--role", "registry"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(sandbox.data_dir().join(dir))
        .args(["--instance-id", id])
        .arg("--config")
        .arg(sandbox.registry_config());
    Svc::spawn(cmd, &format!("registry/{id}")).unwrap_or_else(|e| panic!("{e}"))
}

fn ids(catalog: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = members(catalog).into_iter().map(|m| m.1).collect();
    ids.sort();
    ids
}

#[tokio::test]
async fn instances_use_every_registry_and_survive_losing_one() {
    let sandbox = Sandbox::new();
    let mut a = registry(&sandbox, "reg-a", 0, "a");
    let b = registry(&sandbox, "reg-b", 0, "b");
    let both = format!("{},{}", a.url, b.url);
    let inventory = sandbox.start("inventory", "inv-0", &both);
    let orders = sandbox.start("orders", "ord-0", &both);

    // Registered at both registries.
    wait_registered(&a, &[&inventory, &orders]).await;
    wait_registered(&b, &[&inventory, &orders]).await;

    // Registry A dies: a newcomer registers at B, and the running instances see it
    // (their watch moves on to B).
    let a_port = a.port();
    a.kill();
    let payments = sandbox.start("payments", "pay-0", &both);
    wait_registered(&b, &[&inventory, &orders, &payments]).await;
    wait_peers(&orders, &[&inventory, &payments]).await;

    // A comes back empty (new data dir) on its old port: every instance registers again
    // at their next renewal, so A is refilled within about one renewal interval.
    let a = registry(&sandbox, "reg-a", a_port, "a-fresh");
    let (_, took) = wait_for("registry A refilled", Duration::from_secs(10), || async {
        let got = ids(&try_get_json(&format!("{}/v1/catalog", a.url)).await?);
        if got == ["inv-0", "ord-0", "pay-0"] {
            Ok(())
        } else {
            Err(format!("{got:?}"))
        }
    })
    .await;
    println!("registry refilled {took:?} after it was ready (renew interval {RENEW_INTERVAL:?})");
    assert!(
        took < RENEW_INTERVAL * 2 + Duration::from_millis(1500),
        "refill took {took:?}"
    );
}
