//! When the registry evicts, and what it says when it does:
//!
//! * A registry stopped (SIGSTOP) for longer than a lease TTL evicts nobody when it
//!   resumes: it did not see that time pass, so the instances, renewing again, keep
//!   their registrations (same members, same index).
//! * The "lease expired; instance evicted" line names the evicted instance, not the
//!   registry that wrote it.

use std::time::Duration;

use crate::harness::*;
use serde_json::Value;

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `renewed_at_ms` of `role`/`id` in `catalog`, if it lists it.
fn renewed_at(catalog: &Value, role: &str, id: &str) -> Option<u64> {
    catalog["roles"][role]
        .as_array()?
        .iter()
        .find(|i| i["instance_id"] == id)?["renewed_at_ms"]
        .as_u64()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_registry_stalled_past_the_lease_ttl_evicts_nobody_when_it_resumes() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let ids = [
        ("inventory", "inv-0"),
        ("payments", "pay-0"),
        ("notifications", "not-0"),
    ];
    let instances: Vec<Svc> = ids
        .iter()
        .map(|(role, id)| sandbox.start(role, id, &registry.url))
        .collect();
    let before = wait_registered(&registry, &instances.iter().collect::<Vec<_>>()).await;

    // The fault: the registry stalls for six lease TTLs while the instances run on, long
    // enough that the renewals they send meanwhile time out (after 2 s) and are
    // abandoned, as in a long stall: at the resume, the registry's own clock speaks first.
    registry.freeze();
    tokio::time::sleep(LEASE_TTL * 6).await;
    registry.thaw();
    let resumed_ms = now_ms();

    // Every instance renews again...
    let url = format!("{}/v1/catalog", registry.url);
    let (after, took) = wait_for(
        "every instance to renew after the resume",
        Duration::from_secs(10),
        || async {
            let c = try_get_json(&url).await?;
            match ids
                .iter()
                .find(|(role, id)| renewed_at(&c, role, id).is_none_or(|at| at <= resumed_ms))
            {
                None => Ok(c),
                Some((role, id)) => Err(format!("{role}/{id} not renewed since: {c}")),
            }
        },
    )
    .await;
    println!("every instance renewed {took:?} after the registry resumed");
    // ... into the registration it had: nobody was evicted and registered anew.
    assert_eq!(members(&after), members(&before), "{after}");
    assert_eq!(after["index"], before["index"], "{after}");
    assert!(
        !registry.stderr().contains("evicted"),
        "{}",
        registry.stderr()
    );
}

#[tokio::test]
async fn the_eviction_line_names_the_evicted_instance() {
    let sandbox = Sandbox::new();
    let log_file = sandbox.dir.path().join("registry.jsonl");
    let mut cmd = sandbox.registry_command(0);
    cmd.arg("--log-file").arg(&log_file);
    let registry = Svc::spawn(cmd, "registry/reg-0").unwrap_or_else(|e| panic!("{e}"));
    let mut payments = sandbox.start("payments", "pay-0", &registry.url);
    wait_registered(&registry, &[&payments]).await;

    payments.kill();
    let (line, _) = wait_for(
        "the eviction in the registry's log file",
        Duration::from_secs(10),
        || async {
            let text = std::fs::read_to_string(&log_file).map_err(|e| e.to_string())?;
            text.lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|l| l["msg"] == "lease expired; instance evicted")
                .ok_or_else(|| "no eviction logged yet".to_string())
        },
    )
    .await;
    // The line is the registry's, about payments' instance.
    assert_eq!(line["role"], "registry", "{line}");
    assert_eq!(line["instance"], "reg-0", "{line}");
    assert_eq!(line["instance_role"], "payments", "{line}");
    assert_eq!(line["instance_id"], "pay-0", "{line}");
    assert!(line["silent_ms"].as_u64().is_some(), "{line}");
}
