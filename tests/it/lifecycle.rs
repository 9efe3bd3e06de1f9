//! Instances and registries dying and coming back: lease expiry after SIGKILL,
//! deregistration on SIGTERM, a stopping instance answering every request it took, a
//! registry restart that keeps its view, and an outage during which discovery keeps
//! working from the last known (and persisted) view.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;
use serde_json::Value;

/// Fields of one instance in a catalog.
fn entry<'a>(catalog: &'a Value, role: &str, id: &str) -> &'a Value {
    catalog["roles"][role]
        .as_array()
        .and_then(|list| list.iter().find(|i| i["instance_id"] == id))
        .unwrap_or_else(|| panic!("{role}/{id} not in {catalog}"))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

#[tokio::test]
async fn sigkilled_instance_is_evicted_within_ttl_plus_one_renewal() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let mut inventory = sandbox.start("inventory", "inv-1", &registry.url);
    let orders = sandbox.start("orders", "ord-1", &registry.url);
    wait_peers(&orders, &[&inventory]).await;

    let killed_at = Instant::now();
    inventory.kill();
    let url = format!("{}/v1/catalog", registry.url);
    let (catalog, _) = wait_for(
        "the killed instance to leave the catalog",
        Duration::from_secs(10),
        || async {
            let c = try_get_json(&url).await?;
            if lists(&c, &inventory) {
                Err("still listed".to_string())
            } else {
                Ok(c)
            }
        },
    )
    .await;
    let evicted_after = killed_at.elapsed();
    println!(
        "SIGKILL -> evicted from the registry after {evicted_after:?} (lease_ttl {LEASE_TTL:?}, renew_interval {RENEW_INTERVAL:?})"
    );

    let bound = LEASE_TTL + RENEW_INTERVAL + Duration::from_millis(1500);
    assert!(
        evicted_after <= bound,
        "evicted after {evicted_after:?}, expected at most {bound:?}"
    );
    // It left because its lease ran out, not earlier: the last renewal was at most one
    // interval before the kill, so at least TTL - interval passes (half TTL: slack).
    assert!(
        evicted_after >= LEASE_TTL / 2,
        "evicted after only {evicted_after:?}: the lease should hold for about {LEASE_TTL:?}"
    );
    // (The log line may trail the change it reports by a moment.)
    registry.wait_for_log("evicted", Duration::from_secs(2));
    // The live instance kept renewing and stays.
    assert!(lists(&catalog, &orders), "{catalog}");

    // Its peer sees the eviction through its watch.
    let peers_url = format!("{}/v1/peers", orders.url);
    let (_, took) = wait_for(
        "the evicted instance to leave the peer view",
        Duration::from_secs(5),
        || async {
            let v = try_get_json(&peers_url).await?;
            if lists(&v, &inventory) {
                Err(format!("still in {v}"))
            } else {
                Ok(())
            }
        },
    )
    .await;
    println!("eviction reached the peer view of orders {took:?} later");
}

#[tokio::test]
async fn sigterm_deregisters_before_exit_and_exits_zero() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let mut inventory = sandbox.start("inventory", "inv-1", &registry.url);
    let orders = sandbox.start("orders", "ord-1", &registry.url);
    wait_peers(&orders, &[&inventory]).await;
    let before = catalog(&registry).await;
    assert!(lists(&before, &inventory), "{before}");

    let started = Instant::now();
    let status = inventory.terminate();
    let exit_took = started.elapsed();
    // Right after the exit, with no wait: already gone.
    let after = catalog(&registry).await;
    println!("SIGTERM -> exit took {exit_took:?}");

    assert_eq!(
        status.code(),
        Some(0),
        "exit status {status}; stderr:\n{}",
        inventory.stderr()
    );
    assert!(
        !lists(&after, &inventory),
        "still registered after exit: {after}"
    );
    assert!(lists(&after, &orders), "{after}");
    // Gone because it deregistered, not because its lease ran out meanwhile.
    registry.wait_for_log("deregistered", Duration::from_secs(2));
    let log = registry.stderr();
    assert!(!log.contains("evicted"), "registry log:\n{log}");
    assert_eq!(
        after["index"].as_u64(),
        before["index"].as_u64().map(|i| i + 1),
        "one membership change: {before} -> {after}"
    );

    // The peer learns of it too.
    let peers_url = format!("{}/v1/peers", orders.url);
    wait_for(
        "inventory to leave the peer view",
        Duration::from_secs(5),
        || async {
            let v = try_get_json(&peers_url).await?;
            if lists(&v, &inventory) {
                Err(format!("still in {v}"))
            } else {
                Ok(())
            }
        },
    )
    .await;
}

/// Restarts the registry on `port`, retrying briefly if the port is still held.
/// What clients of a gateway stopping on SIGTERM saw.
#[derive(Debug, Default)]
struct Outcomes {
    /// Any HTTP answer, whatever its status.
    answered: usize,
    /// Connection refused: the listener was closed, nothing was sent.
    refused: usize,
    /// Connection reset: the gateway never took the connection (still queued when its
    /// listener closed), so it never read the request.
    reset: usize,
    /// Anything else, above all a connection that ended with no answer after the
    /// request was sent: what a stopping instance must never do.
    unanswered: Vec<String>,
}

/// Many clients keep sending requests, each on a new connection, to a gateway that is
/// stopped with SIGTERM, three times. A stopping instance answers every request on a
/// connection it took (it read it, so only it can say what became of it), refuses new
/// connections, and resets only the ones it never took. With actix-web's own graceful
/// stop, every stop here left some requests unanswered: a connection that had not
/// started its request yet was closed without reading it.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_gateway_stopping_on_sigterm_answers_every_request_it_took() {
    let mut cluster = Topology::new().gateways(1).start().await;
    let mut total = Outcomes::default();
    for round in 0..3 {
        if round > 0 {
            cluster.restart("gateway-0");
            cluster.wait_connected().await;
        }
        // Goes to inventory, which is not there: answered 503 at once.
        let url = format!("{}/products", cluster.api);
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(Mutex::new(Outcomes::default()));
        let clients: Vec<_> = (0..16)
            .map(|_| {
                let (url, stop, seen) = (url.clone(), stop.clone(), seen.clone());
                tokio::spawn(async move {
                    let client = http();
                    while !stop.load(Ordering::SeqCst) {
                        let sent = client.post(&url).json(&product("tea")).send().await;
                        let refused = matches!(&sent, Err(e) if is_refused(e));
                        {
                            let mut seen = seen.lock().unwrap();
                            match sent {
                                Ok(_) => seen.answered += 1,
                                Err(e) if is_refused(&e) => seen.refused += 1,
                                Err(e) if is_reset(&e) => seen.reset += 1,
                                Err(e) => seen.unanswered.push(format!("{e:?}")),
                            }
                        }
                        if refused {
                            // Nothing listens any more: no need to spin.
                            tokio::time::sleep(Duration::from_millis(5)).await;
                        }
                    }
                })
            })
            .collect();
        wait_for(
            "answers before the stop",
            Duration::from_secs(10),
            || async {
                match seen.lock().unwrap().answered {
                    0 => Err("none yet".to_string()),
                    _ => Ok(()),
                }
            },
        )
        .await;
        let gateway = &mut cluster["gateway-0"];
        let status = tokio::task::block_in_place(|| gateway.terminate());
        assert!(status.success(), "exited with {status}");
        stop.store(true, Ordering::SeqCst);
        for client in clients {
            client.await.expect("client task");
        }
        let seen = std::mem::take(&mut *seen.lock().unwrap());
        println!("stop {round}: {seen:?}");
        total.answered += seen.answered;
        total.refused += seen.refused;
        total.reset += seen.reset;
        total.unanswered.extend(seen.unanswered);
    }
    assert!(
        total.unanswered.is_empty(),
        "requests left unanswered by a stopping gateway: {:?}",
        total.unanswered
    );
    assert!(total.refused > 0, "the clients never saw the gateway gone");
}

fn restart_registry(sandbox: &Sandbox, port: u16) -> Svc {
    let mut last = String::new();
    for _ in 0..20 {
        let mut cmd = svc_command();
        cmd.arg("run")
            .args(["--role", "registry"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(sandbox.data_dir())
            .args(["--instance-id", "reg-0"])
            .arg("--config")
            .arg(sandbox.registry_config());
        match Svc::spawn(cmd, "registry/reg-0 (restarted)") {
            Ok(svc) => return svc,
            Err(e) if e.contains("cannot listen") => {
                last = e;
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(e) => panic!("{e}"),
        }
    }
    panic!("port {port} stayed busy: {last}");
}

#[tokio::test]
async fn restarted_registry_keeps_its_view_and_instances_renew_into_it() {
    let sandbox = Sandbox::new();
    let mut registry = sandbox.start_registry();
    let port = registry.port();
    let inventory = sandbox.start("inventory", "inv-1", &registry.url);
    let orders = sandbox.start("orders", "ord-1", &registry.url);
    let before = wait_registered(&registry, &[&inventory, &orders]).await;

    registry.kill();
    let restarted = restart_registry(&sandbox, port);
    let restarted_at = now_ms();
    assert_eq!(restarted.url, registry.url);

    // The view is back at once, from the registry's file.
    let right_away = catalog(&restarted).await;
    assert_eq!(members(&right_away), members(&before), "{right_away}");
    assert_eq!(right_away["index"], before["index"], "{right_away}");

    // More than one TTL later, the instances are still there: they renewed into the
    // restored leases (nobody re-registered them, which would move the index).
    let grace = LEASE_TTL + RENEW_INTERVAL * 2 + Duration::from_millis(250);
    tokio::time::sleep(grace).await;
    let later = catalog(&restarted).await;
    assert_eq!(members(&later), members(&before), "{later}");
    assert_eq!(later["index"], before["index"], "{later}");
    for (role, id) in [("inventory", "inv-1"), ("orders", "ord-1")] {
        let e = entry(&later, role, id);
        assert!(
            e["renewed_at_ms"].as_u64().unwrap() > restarted_at,
            "{role}/{id} did not renew at the restarted registry: {e}"
        );
        assert_eq!(
            e["registered_at_ms"],
            entry(&before, role, id)["registered_at_ms"],
            "{role}/{id} was registered anew"
        );
    }
    assert!(
        !restarted.stderr().contains("evicted"),
        "{}",
        restarted.stderr()
    );
}

#[tokio::test]
async fn registry_outage_keeps_discovery_and_traffic_working() {
    let sandbox = Sandbox::new();
    let mut registry = sandbox.start_registry();
    let inventory = sandbox.start("inventory", "inv-1", &registry.url);
    let mut gateway = sandbox.start("gateway", "gw-1", &registry.url);
    wait_peers(&gateway, &[&inventory]).await;
    wait_peers(&inventory, &[&gateway]).await;
    let products = format!("{}/api/v1/products", gateway.url);
    assert_eq!(post_json(&products, &product("before")).await.status(), 201);

    // The registry goes away for good; the instances notice, and keep their view.
    registry.kill();
    gateway.wait_for_log("keeping the last view", Duration::from_secs(10));
    inventory.wait_for_log("keeping the last view", Duration::from_secs(10));
    let view = get_json(&format!("{}/v1/peers", gateway.internal_url)).await;
    assert!(lists(&view, &inventory), "{view}");
    let view = get_json(&format!("{}/v1/peers", inventory.url)).await;
    assert!(lists(&view, &gateway), "{view}");

    // Traffic still flows gateway -> inventory.
    let res = post_json(&products, &product("during-outage")).await;
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    let got = get_json(&format!("{products}/during-outage")).await;
    assert_eq!(got["sku"], "during-outage");

    // A gateway restarted while the registry is still down finds inventory in the view
    // it persisted, at once (no registry to learn it from), and forwards again.
    let status = gateway.terminate();
    assert_eq!(status.code(), Some(0), "stderr:\n{}", gateway.stderr());
    let gateway = sandbox.start("gateway", "gw-1", &registry.url);
    assert_eq!(
        gateway.ready["registered_at"], 0,
        "no registry should have accepted it: {}",
        gateway.ready
    );
    let view = get_json(&format!("{}/v1/peers", gateway.internal_url)).await;
    assert!(
        lists(&view, &inventory),
        "restored view lacks inventory: {view}"
    );
    let products = format!("{}/api/v1/products", gateway.url);
    let res = post_json(&products, &product("after-restart")).await;
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
    let list = get_json(&products).await;
    assert_eq!(list["products"].as_array().map(Vec::len), Some(3), "{list}");
}
