//! Stateful roles scale by shards: each test starts a cluster with two shards of orders,
//! inventory and payments (and two gateways), and checks the routing rules of
//! docs/ARCHITECTURE.md from the outside: where entities land, that calls about one
//! reach its owner, that listings merge every shard and say when one is missing, and
//! that the registry lets only one live instance hold a shard.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::harness::*;
use serde_json::{json, Value};

/// Two gateways and two shards of orders, inventory and payments (one of notifications).
fn two_shards() -> Topology {
    Topology::shop()
        .gateways(2)
        .shards("orders", 2)
        .shards("inventory", 2)
        .shards("payments", 2)
}

fn ids(items: &[Value], key: &str) -> Vec<String> {
    items
        .iter()
        .map(|i| i[key].as_str().unwrap_or_default().to_string())
        .collect()
}

fn sorted_unique(keys: &[String]) -> bool {
    keys.windows(2).all(|w| w[0] < w[1])
}

#[tokio::test]
async fn entities_spread_over_shards_and_a_cross_shard_order_confirms() {
    let cluster = two_shards().start().await;
    // Three products on each inventory shard, by the documented hash.
    let on0 = keys_on_shard("sku", 0, 2, 3);
    let on1 = keys_on_shard("sku", 1, 2, 3);
    for sku in on0.iter().chain(&on1) {
        cluster.create_product(sku, 100, 50).await;
    }
    for (shard, skus) in [(0usize, &on0), (1, &on1)] {
        for sku in skus {
            let (owner, other) = (
                cluster.instances("inventory")[shard],
                cluster.instances("inventory")[1 - shard],
            );
            let (status, _, _) = cluster
                .get(&format!("{}/v1/products/{sku}", owner.url))
                .await;
            assert_eq!(status, 200, "{sku} on inventory shard {shard}");
            let (status, _, _) = cluster
                .get(&format!("{}/v1/products/{sku}", other.url))
                .await;
            assert_eq!(status, 404, "{sku} only on its own shard");
        }
    }

    // Orders without a key go to any live orders shard: both get some.
    let mut orders = Vec::new();
    let mut shards_seen = BTreeSet::new();
    for n in 0..20 {
        let placed = cluster
            .place_order_via(n, &order_body(&[(&on0[n % 3], 1)], None), None)
            .await;
        assert_eq!(placed.status, 201, "{placed:?}");
        assert_eq!(placed.body["status"], "confirmed", "{placed:?}");
        shards_seen.insert(shard_of_order(&placed.id()));
        orders.push(placed.body);
        if shards_seen.len() == 2 && n >= 3 {
            break;
        }
    }
    assert_eq!(
        shards_seen.len(),
        2,
        "orders landed on shards {shards_seen:?}"
    );

    // One order with lines on both inventory shards: reserved, committed on each.
    let (a, b) = (&on0[0], &on1[0]);
    let before_a = cluster
        .get_ok(&format!("{}/products/{a}", cluster.api_at(0)))
        .await;
    let placed = cluster
        .place_order_via(1, &order_body(&[(a, 2), (b, 3)], None), None)
        .await;
    assert_eq!(placed.status, 201, "{placed:?}");
    let cross = placed.body.clone();
    let id = placed.id();
    assert_eq!(cross["status"], "confirmed", "{cross}");
    assert_eq!(cross["total_minor"], 500, "{cross}");
    let after_a = cluster
        .get_ok(&format!("{}/products/{a}", cluster.api_at(0)))
        .await;
    assert_eq!(u64_of(&after_a, "sold"), u64_of(&before_a, "sold") + 2);
    let after_b = cluster
        .get_ok(&format!("{}/products/{b}", cluster.api_at(1)))
        .await;
    assert_eq!(
        (u64_of(&after_b, "available"), u64_of(&after_b, "sold")),
        (47, 3),
        "{after_b}"
    );
    for (shard, sku) in [(0usize, a), (1, b)] {
        let url = format!(
            "{}/v1/reservations/{id}",
            cluster.instances("inventory")[shard].url
        );
        let r = cluster.get_ok(&url).await;
        assert_eq!(r["status"], "committed", "shard {shard}: {r}");
        assert_eq!(ids(r["lines"].as_array().unwrap(), "sku"), [sku.as_str()]);
    }
    orders.push(cross);

    // Each payment lives on the payments shard its order id hashes to.
    let mut captured = 0;
    for o in &orders {
        let id = o["id"].as_str().unwrap();
        let (status, _, payment) = cluster
            .get(&format!("{}/orders/{id}/payment", cluster.api_at(0)))
            .await;
        assert_eq!((status, &payment["status"]), (200, &json!("captured")));
        let owner = cluster.instances("payments")[shard_for_key(id, 2) as usize];
        cluster
            .get_ok(&format!("{}/v1/payments/{id}", owner.url))
            .await;
        captured += u64_of(o, "total_minor");
    }
    let mut ledger_total = 0;
    for p in cluster.instances("payments") {
        let ledger = cluster.get_ok(&format!("{}/v1/ledger", p.url)).await;
        ledger_total += u64_of(&ledger, "captured_total_minor");
    }
    assert_eq!(ledger_total, captured, "captured over both payments shards");

    // Listings merge both shards, page by page, in key order, nothing twice.
    let (products, missing) = cluster.walk("products", 2).await;
    let skus = ids(&products, "sku");
    let mut expected: Vec<String> = on0.iter().chain(&on1).cloned().collect();
    expected.sort();
    assert_eq!(skus, expected);
    assert!(missing.iter().all(Vec::is_empty), "{missing:?}");
    let (listed, missing) = cluster.walk("orders", 3).await;
    let listed = ids(&listed, "id");
    assert!(sorted_unique(&listed), "{listed:?}");
    let mut expected = ids(&orders, "id");
    expected.sort();
    assert_eq!(listed, expected);
    assert!(missing.iter().all(Vec::is_empty), "{missing:?}");

    // Every order is notified once (one notifications shard takes every event).
    let url = format!(
        "{}/v1/notifications",
        cluster.instances("notifications")[0].url
    );
    wait_for("every order notified", Duration::from_secs(10), || async {
        let all = try_get_json(&url).await?;
        let n = all["notifications"].as_array().map_or(0, Vec::len);
        if n == orders.len() {
            Ok(())
        } else {
            Err(format!("{n} of {}", orders.len()))
        }
    })
    .await;
}

#[tokio::test]
async fn a_dead_shard_is_left_out_and_its_entities_get_503_until_it_returns() {
    let mut cluster = two_shards().start().await;
    let a = keys_on_shard("sku", 0, 2, 1).remove(0);
    let b = keys_on_shard("sku", 1, 2, 1).remove(0);
    cluster.create_product(&a, 100, 100).await;
    cluster.create_product(&b, 100, 100).await;
    let key0 = keys_on_shard("key", 0, 2, 1).remove(0);
    let key1 = keys_on_shard("key", 1, 2, 1).remove(0);
    let body = order_body(&[(&a, 1)], None);
    let order0 = cluster.place_order_via(0, &body, Some(&key0)).await;
    let order1 = cluster.place_order_via(1, &body, Some(&key1)).await;
    assert_eq!((order0.status, order1.status), (201, 201));
    let (id0, id1) = (order0.id(), order1.id());
    assert_eq!((shard_of_order(&id0), shard_of_order(&id1)), (0, 1));

    // SIGKILL shard 1 of orders and of inventory; wait until the others notice.
    cluster["orders-1"].kill();
    cluster["inventory-1"].kill();
    let mut watchers = cluster.instances("gateway");
    watchers.push(&cluster["orders-0"]);
    for watcher in watchers {
        cluster
            .wait_forgotten(watcher, &[&cluster["orders-1"], &cluster["inventory-1"]])
            .await;
    }

    // Listings show what the live shards hold, and say which shard is missing.
    let list = cluster
        .get_ok(&format!("{}/orders", cluster.api_at(0)))
        .await;
    assert_eq!(
        (&list["partial"], &list["missing_shards"]),
        (&json!(true), &json!([1]))
    );
    assert_eq!(
        ids(list["orders"].as_array().unwrap(), "id"),
        [id0.as_str()]
    );
    let list = cluster
        .get_ok(&format!("{}/products", cluster.api_at(1)))
        .await;
    assert_eq!(
        (&list["partial"], &list["missing_shards"]),
        (&json!(true), &json!([1]))
    );
    assert_eq!(
        ids(list["products"].as_array().unwrap(), "sku"),
        [a.as_str()]
    );

    // Calls about the dead shards' entities: 503 with Retry-After, never another shard.
    for url in [
        format!("{}/orders/{id1}", cluster.api_at(0)),
        format!("{}/products/{b}", cluster.api_at(1)),
    ] {
        let (status, retry_after, problem) = cluster.get(&url).await;
        assert_eq!(status, 503, "{url}: {problem}");
        assert!(retry_after.is_some(), "{url}: no Retry-After");
        assert!(
            problem["detail"]
                .as_str()
                .is_some_and(|d| d.contains("shard 1")),
            "{problem}"
        );
    }
    let retried = cluster.place_order_via(0, &body, Some(&key1)).await;
    assert_eq!(retried.status, 503, "a key of the dead shard: {retried:?}");
    let with_b = cluster
        .place_order_via(0, &order_body(&[(&b, 1)], None), None)
        .await;
    assert_eq!(
        with_b.status, 503,
        "a product of the dead shard: {with_b:?}"
    );

    // The live shards keep taking orders.
    for n in 0..4 {
        let placed = cluster.place_order_via(n, &body, None).await;
        assert_eq!(placed.status, 201, "{placed:?}");
        assert_eq!(placed.body["status"], "confirmed", "{placed:?}");
        assert_eq!(shard_of_order(&placed.id()), 0);
    }

    // Back from the dead, with its state: it serves its entities again.
    cluster.restart("orders-1");
    cluster.restart("inventory-1");
    cluster.wait_connected().await;
    let order = cluster
        .get_ok(&format!("{}/orders/{id1}", cluster.api_at(1)))
        .await;
    assert_eq!(order["status"], "confirmed", "{order}");
    let again = cluster.place_order_via(0, &body, Some(&key1)).await;
    assert_eq!((again.status, again.id()), (200, id1.clone()), "{again:?}");
    let (orders, missing) = cluster.walk("orders", 100).await;
    assert_eq!(orders.len(), 6, "{orders:?}");
    assert_eq!(missing, [Vec::<u64>::new()]);
    cluster
        .get_ok(&format!("{}/products/{b}", cluster.api_at(0)))
        .await;
}

#[tokio::test]
async fn an_idempotency_key_always_lands_on_its_shard_and_its_order() {
    let cluster = two_shards().start().await;
    let tea = keys_on_shard("tea", 1, 2, 1).remove(0);
    cluster.create_product(&tea, 250, 100).await;
    let body = order_body(&[(&tea, 1)], None);
    let keys: Vec<String> = keys_on_shard("k", 0, 2, 2)
        .into_iter()
        .chain(keys_on_shard("k", 1, 2, 2))
        .collect();
    for key in &keys {
        // The same request, through either gateway, three times and twice at once.
        let (first, second) = tokio::join!(
            cluster.place_order_via(0, &body, Some(key)),
            cluster.place_order_via(1, &body, Some(key)),
        );
        let third = cluster.place_order_via(1, &body, Some(key)).await;
        let id = first.id();
        assert_eq!(shard_of_order(&id), shard_for_key(key, 2), "{key}: {id}");
        for retry in [&second, &third] {
            assert!(matches!(retry.status, 200 | 201), "{retry:?}");
            assert_eq!(retry.id(), id, "{key}");
        }
    }
    let (orders, _) = cluster.walk("orders", 100).await;
    assert_eq!(orders.len(), keys.len(), "one order per key: {orders:?}");

    // An orders shard refuses a key that is not its own instead of creating an order.
    let key = &keys[0]; // lives on shard 0
    let res = client_as("gateway")
        .post(format!("{}/v1/orders", cluster.instances("orders")[1].url))
        .header("idempotency-key", key.as_str())
        .json(&body)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(res, 421, "a key of another shard").await;
    assert!(
        problem["detail"].as_str().unwrap().contains("shard 0"),
        "{problem}"
    );
    // So does an inventory shard for a SKU of the other shard.
    let res = post_json_as(
        "gateway",
        &format!("{}/v1/products", cluster.instances("inventory")[0].url),
        &json!({ "sku": tea, "name": "Tea", "price_minor": 1, "stock": 1 }),
    )
    .await;
    assert_problem(res, 421, "a SKU of another shard").await;
}

#[tokio::test]
async fn a_second_holder_of_a_shard_is_refused_until_the_first_leaves() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let start = |id: &str| {
        let mut cmd = sandbox.run_command("orders", id, &registry.url);
        cmd.args([
            "--shards",
            "orders=2",
            "--shard",
            "1",
            "--log-format",
            "json",
        ]);
        sandbox.start_cmd(cmd, "orders", id)
    };
    let mut first = start("orders-1");
    wait_registered(&registry, &[&first]).await;

    // The second claimant still starts, but the registry refuses it, and it says so
    // loudly: an error naming the holder, repeated while it lasts.
    let second = start("orders-1b");
    second.wait_for_log("held by orders-1 (", Duration::from_secs(10));
    let refusal = second
        .stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|l| l.to_string().contains("held by orders-1 ("))
        .unwrap_or_default();
    assert_eq!(refusal["level"], "ERROR", "{refusal}");
    assert!(
        refusal
            .to_string()
            .contains("shard 1 of orders is held by orders-1"),
        "{refusal}"
    );
    let listed = catalog(&registry).await;
    let holders: Vec<_> = members(&listed)
        .into_iter()
        .filter(|(role, _, _)| role == "orders")
        .collect();
    assert_eq!(holders.len(), 1, "{listed}");
    assert_eq!(holders[0].1, "orders-1", "{listed}");

    // The same refusal, seen at the API: 409 problem+json naming holder and shard.
    let claim = json!({
        "role": "orders", "instance_id": "orders-x", "address": "https://127.0.0.1:9",
        "version": "1", "metadata": { "shard": "1" },
    });
    let res = post_json_as("orders", &format!("{}/v1/instances", registry.url), &claim).await;
    let problem = assert_problem(res, 409, "a second holder").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(
        detail.starts_with("shard 1 of orders is held by orders-1 (https://127.0.0.1:")
            && detail.ends_with("stop it or choose another shard"),
        "{detail}"
    );

    // Once the holder is gone, the waiting instance takes the shard over.
    first.terminate();
    let url = format!("{}/v1/catalog", registry.url);
    wait_for(
        "orders-1b to hold shard 1",
        Duration::from_secs(10),
        || async {
            let c = try_get_json(&url).await?;
            let orders = c["roles"]["orders"].as_array().cloned().unwrap_or_default();
            match orders.as_slice() {
                [only]
                    if only["instance_id"] == "orders-1b" && only["metadata"]["shard"] == "1" =>
                {
                    Ok(())
                }
                other => Err(format!("{other:?}")),
            }
        },
    )
    .await;
}

#[test]
fn shard_settings_that_cannot_work_stop_start_up_naming_the_key() {
    let sandbox = Sandbox::new();
    // A shard beyond its role's count would mint ids nobody routes to.
    let mut cmd = sandbox.run_command("orders", "orders-2", &dead_url());
    cmd.args(["--shards", "orders=2", "--shard", "2"]);
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("key `shard`") && out.stderr.contains("expected 0 to 1"),
        "{}",
        out.stderr
    );
    // Only stateful roles have shards, in a file as on the command line.
    let file = sandbox.write_file("bad-shards.yaml", "shards:\n  gateway: 2\n");
    let mut cmd = svc_command();
    cmd.args(["config", "check", "--config"]).arg(&file);
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(
        out.stderr.contains("key `shards.gateway`"),
        "{}",
        out.stderr
    );
    let mut cmd = sandbox.run_command("gateway", "gw-0", &dead_url());
    cmd.args(["--shards", "orders=two"]);
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(2), "{}", out.stderr);
    assert!(out.stderr.contains("key `shards`"), "{}", out.stderr);
}

#[tokio::test]
async fn payments_and_notifications_refuse_a_misrouted_call_with_421() {
    let cluster = two_shards().shards("notifications", 2).start().await;
    // An order id that hashes to shard 1 of payments and of notifications (2 shards each).
    let order = keys_on_shard("ord-0", 1, 2, 1).remove(0);

    // Payments: shard 0 refuses to authorize, capture or void it, naming shard 1...
    let authorize = json!({ "amount_minor": 500 });
    for (step, body) in [
        ("authorize", authorize.clone()),
        ("capture", json!({})),
        ("void", json!({})),
    ] {
        let url = format!(
            "{}/v1/payments/{order}/{step}",
            cluster.instances("payments")[0].url
        );
        let res = post_json_as("orders", &url, &body).await;
        let problem = assert_problem(res, 421, &format!("{step} on payments shard 0")).await;
        let detail = problem["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("belongs to shard 1 of payments"),
            "{problem}"
        );
    }
    // ...and wrote nothing (not even a void's tombstone), while its owner takes it.
    let listed = get_json(&format!(
        "{}/v1/payments",
        cluster.instances("payments")[0].url
    ))
    .await;
    assert_eq!(listed["payments"], json!([]), "{listed}");
    let url = format!(
        "{}/v1/payments/{order}/authorize",
        cluster.instances("payments")[1].url
    );
    let res = post_json_as("orders", &url, &authorize).await;
    assert_eq!(res.status(), 201);

    // Notifications: shard 0 refuses the order's event; shard 1 records it.
    let event = json!({
        "id": "orders-0/1", "kind": "order.confirmed", "producer": "orders-0", "seq": 1,
        "occurred_at_ms": 0, "key": order,
        "payload": { "order_id": order, "total_minor": 500 },
    });
    let url = |shard: usize| {
        format!(
            "{}/v1/events",
            cluster.instances("notifications")[shard].url
        )
    };
    let res = post_json_as("orders", &url(0), &event).await;
    let problem = assert_problem(res, 421, "an event on notifications shard 0").await;
    let detail = problem["detail"].as_str().unwrap_or_default();
    assert!(
        detail.contains("belongs to shard 1 of notifications"),
        "{problem}"
    );
    let res = post_json_as("orders", &url(1), &event).await;
    assert_eq!(res.status(), 200);
    let on = |shard: usize| {
        format!(
            "{}/v1/notifications",
            cluster.instances("notifications")[shard].url
        )
    };
    assert_eq!(get_json(&on(0)).await["notifications"], json!([]));
    let recorded = get_json(&on(1)).await;
    assert_eq!(recorded["notifications"][0]["order_id"], order.as_str());
}
