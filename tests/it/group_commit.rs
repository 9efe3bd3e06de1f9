//! Group commit under SIGKILL: each stateful role takes a stream of writes from many
//! concurrent callers (so its writer commits them in batches) and is SIGKILLed in the
//! middle. After the restart every write that was acknowledged is there, and nothing
//! is half applied: the role's own invariants hold over everything stored, acknowledged
//! or not (a write whose answer was lost may or may not be there; never in part).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use serde_json::{json, Value};

use crate::harness::*;

/// Concurrent callers: enough that commands queue behind each commit.
const CALLERS: usize = 24;
/// Acknowledged writes before the SIGKILL, so it lands mid-stream.
const ACKED_BEFORE_KILL: usize = 300;
const SKUS: [&str; 4] = ["gc-a", "gc-b", "gc-c", "gc-d"];
const STOCK: u64 = 1_000_000;

/// Sends `request(key)` from [`CALLERS`] tasks with keys `k<task>-<n>` until the target
/// dies; SIGKILLs it after [`ACKED_BEFORE_KILL`] acknowledgements, restarts it in place,
/// and returns the keys whose write was acknowledged (2xx).
async fn load_and_kill(
    cluster: &mut Cluster,
    id: &str,
    identity: &'static str,
    request: fn(&str, &str) -> (String, Value),
) -> BTreeSet<String> {
    let base = cluster[id].url.clone();
    let acked = Arc::new(parking_lot::Mutex::new(BTreeSet::new()));
    let count = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = Vec::new();
    for task in 0..CALLERS {
        let (base, acked, count, stop) = (base.clone(), acked.clone(), count.clone(), stop.clone());
        tasks.push(tokio::spawn(async move {
            let client = client_as(identity);
            for n in 0.. {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                let key = format!("k{task}-{n}");
                let (path, body) = request(&base, &key);
                match client.post(&path).json(&body).send().await {
                    Ok(res) if res.status().is_success() => {
                        acked.lock().insert(key);
                        count.fetch_add(1, Ordering::Relaxed);
                    }
                    Ok(res) => panic!("{path} answered {}: {:?}", res.status(), res.text().await),
                    // The target was killed: what was in flight is unknown, not acked.
                    Err(_) => return,
                }
            }
        }));
    }
    wait_for(
        "writes before the kill",
        Duration::from_secs(60),
        || async {
            let n = count.load(Ordering::Relaxed);
            if n >= ACKED_BEFORE_KILL {
                Ok(())
            } else {
                Err(format!("{n} acknowledged"))
            }
        },
    )
    .await;
    cluster[id].kill();
    stop.store(true, Ordering::Relaxed);
    for task in tasks {
        task.await.expect("a load task failed");
    }
    cluster.restart(id);
    let acked = acked.lock().clone();
    assert!(acked.len() >= ACKED_BEFORE_KILL);
    acked
}

/// Every acknowledged key `k` has its row, `order_id` `ord-0-k`, among `stored`.
fn assert_none_lost(acked: &BTreeSet<String>, stored: &[Value]) {
    let ids: BTreeSet<&str> = stored.iter().map(|r| str_of(r, "order_id")).collect();
    let lost: Vec<_> = acked
        .iter()
        .filter(|k| !ids.contains(format!("ord-0-{k}").as_str()))
        .collect();
    assert!(lost.is_empty(), "acknowledged, then lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inventory_killed_mid_group_commit_keeps_every_acknowledged_reservation_whole() {
    let mut cluster = Topology::new().shards("inventory", 1).start().await;
    let url = cluster["inventory-0"].url.clone();
    for sku in SKUS {
        let body = json!({ "sku": sku, "name": sku, "price_minor": 100, "stock": STOCK });
        let res = post_json_as("gateway", &format!("{url}/v1/products"), &body).await;
        assert_eq!(res.status(), 201);
    }
    let acked = load_and_kill(&mut cluster, "inventory-0", "orders", |base, key| {
        // One or two lines, so a half-applied reservation would show in the buckets.
        let n: usize = key.len();
        let lines = [
            json!({ "sku": SKUS[n % 4], "quantity": 1 }),
            json!({ "sku": SKUS[(n + 1) % 4], "quantity": 2 }),
        ];
        let lines = &lines[..1 + n % 2];
        let body = json!({ "order_id": format!("ord-0-{key}"), "lines": lines });
        (format!("{base}/v1/reservations"), body)
    })
    .await;

    let url = cluster["inventory-0"].url.clone();
    let stored = get_json(&format!("{url}/v1/reservations")).await;
    let stored = stored["reservations"].as_array().cloned().unwrap();
    assert_none_lost(&acked, &stored);

    // Every unit is in one bucket, and `reserved` is exactly what the stored
    // reservations hold: no reservation without its stock, no stock without its row.
    let mut held: BTreeMap<String, u64> = BTreeMap::new();
    for r in &stored {
        assert_eq!(r["status"], "held", "{r}");
        for line in r["lines"].as_array().unwrap() {
            *held.entry(str_of(line, "sku").to_string()).or_default() += u64_of(line, "quantity");
        }
    }
    for sku in SKUS {
        let p = get_json(&format!("{url}/v1/products/{sku}")).await;
        let (available, reserved, sold) = (
            u64_of(&p, "available"),
            u64_of(&p, "reserved"),
            u64_of(&p, "sold"),
        );
        assert_eq!(available + reserved + sold, STOCK, "{p}");
        assert_eq!(reserved, held.get(sku).copied().unwrap_or(0), "{p}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn payments_killed_mid_group_commit_keeps_every_acknowledged_authorization_whole() {
    let mut cluster = Topology::new().shards("payments", 1).start().await;
    let acked = load_and_kill(&mut cluster, "payments-0", "orders", |base, key| {
        let body = json!({ "amount_minor": 100 + key.len() as u64 });
        (format!("{base}/v1/payments/ord-0-{key}/authorize"), body)
    })
    .await;

    let url = cluster["payments-0"].url.clone();
    let payments = get_json(&format!("{url}/v1/payments")).await;
    let payments = payments["payments"].as_array().cloned().unwrap();
    assert_none_lost(&acked, &payments);

    // The ledger and the payment rows agree: one authorize entry per payment, for its
    // amount, and no entry without a payment.
    let ledger = get_json(&format!("{url}/v1/ledger")).await;
    let entries = ledger["entries"].as_array().cloned().unwrap();
    let mut authorized: BTreeMap<String, u64> = BTreeMap::new();
    for e in &entries {
        assert_eq!(e["kind"], "authorize", "{e}");
        let before =
            authorized.insert(str_of(e, "order_id").to_string(), u64_of(e, "amount_minor"));
        assert!(before.is_none(), "two entries for one payment: {e}");
    }
    assert_eq!(authorized.len(), payments.len());
    for p in &payments {
        assert_eq!(p["status"], "authorized", "{p}");
        assert_eq!(
            authorized.get(str_of(p, "order_id")),
            Some(&u64_of(p, "amount_minor")),
            "{p}"
        );
    }
    let seqs: Vec<u64> = entries.iter().map(|e| u64_of(e, "seq")).collect();
    assert_eq!(
        seqs,
        (1..=entries.len() as u64).collect::<Vec<_>>(),
        "no gap in the ledger"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn notifications_killed_mid_group_commit_keep_every_acknowledged_event_once() {
    let mut cluster = Topology::new().shards("notifications", 1).start().await;
    let acked = load_and_kill(&mut cluster, "notifications-0", "orders", |base, key| {
        let order = format!("ord-0-{key}");
        let body = json!({
            "id": format!("evt-gc-{key}"),
            "kind": "order.confirmed",
            "producer": "orders-0",
            "seq": 1,
            "occurred_at_ms": 1,
            "key": order,
            "payload": { "order_id": order, "total_minor": 100 },
        });
        (format!("{base}/v1/events"), body)
    })
    .await;

    let url = cluster["notifications-0"].url.clone();
    let all = get_json(&format!("{url}/v1/notifications")).await;
    let all = all["notifications"].as_array().cloned().unwrap();
    let mut per_order: BTreeMap<String, usize> = BTreeMap::new();
    for n in &all {
        *per_order
            .entry(str_of(n, "order_id").to_string())
            .or_default() += 1;
    }
    assert!(
        per_order.values().all(|n| *n == 1),
        "one notification per event"
    );
    let lost: Vec<_> = acked
        .iter()
        .filter(|k| !per_order.contains_key(&format!("ord-0-{k}")))
        .collect();
    assert!(lost.is_empty(), "acknowledged, then lost: {lost:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn orders_killed_mid_group_commit_keeps_every_acknowledged_order_and_settles() {
    let mut shop = Topology::shop().start().await;
    for sku in SKUS {
        shop.create_product(sku, 100, STOCK).await;
    }
    let gateway = shop.api.clone();
    let acked = {
        // Through the gateway, keyed, as customers do; killing orders here.
        let acked = Arc::new(parking_lot::Mutex::new(BTreeSet::new()));
        let count = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let mut tasks = Vec::new();
        for task in 0..CALLERS {
            let (gateway, acked, count, stop) =
                (gateway.clone(), acked.clone(), count.clone(), stop.clone());
            tasks.push(tokio::spawn(async move {
                let client = http();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        return;
                    }
                    let key = format!("gc-{task}-{n}");
                    let body = order_body(&[(SKUS[n % 4], 1)], None);
                    let res = client
                        .post(format!("{gateway}/orders"))
                        .header("idempotency-key", &key)
                        .json(&body)
                        .send()
                        .await;
                    match res {
                        Ok(res) if (200..=202).contains(&res.status().as_u16()) => {
                            let order: Value = res.json().await.unwrap();
                            acked.lock().insert(str_of(&order, "id").to_string());
                            count.fetch_add(1, Ordering::Relaxed);
                        }
                        // Orders is down: the gateway's 503 (or a cut exchange).
                        _ => return,
                    }
                }
            }));
        }
        wait_for(
            "orders before the kill",
            Duration::from_secs(60),
            || async {
                let n = count.load(Ordering::Relaxed);
                if n >= ACKED_BEFORE_KILL / 3 {
                    Ok(())
                } else {
                    Err(format!("{n} acknowledged"))
                }
            },
        )
        .await;
        shop["orders-0"].kill();
        stop.store(true, Ordering::Relaxed);
        for task in tasks {
            task.await.expect("a load task failed");
        }
        shop.restart("orders-0");
        let acked = acked.lock().clone();
        acked
    };

    let orders = shop.wait_all_final(Duration::from_secs(60)).await;
    let ids: BTreeSet<String> = orders.iter().map(|o| str_of(o, "id").to_string()).collect();
    let lost: Vec<_> = acked.iter().filter(|id| !ids.contains(*id)).collect();
    assert!(lost.is_empty(), "acknowledged, then lost: {lost:?}");
    let initial: Vec<(&str, u64)> = SKUS.iter().map(|s| (*s, STOCK)).collect();
    shop.wait_notifications(orders.len(), Duration::from_secs(60))
        .await;
    shop.assert_settled(&initial, &orders).await;
}
