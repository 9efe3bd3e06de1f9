//! Attacks on the public edge that cost nothing but requests (issue 13): a key holder
//! trying to eject a dependency with tiny deadlines, outsiders making up HTTP methods
//! to grow the metrics, and internal headers read before the API key is checked.

use std::time::Duration;

use crate::harness::*;
use reqwest::Method;
use serde_json::Value;

/// The `/metrics` text of an instance's internal listener.
async fn metrics_of(svc: &Svc) -> String {
    let url = format!("{}/metrics", svc.internal_url);
    let res = http().get(&url).send().await.expect("GET /metrics");
    assert_eq!(res.status(), 200, "GET {url}");
    res.text().await.expect("metrics text")
}

fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    metric_sample(text, name, labels).unwrap_or(0.0)
}

/// Issue 13, point 1: a create naming 50 unknown SKUs with `x-svc-deadline-ms: 3`,
/// sent to the public listener at 2 requests/s, used to make orders' product lookups
/// time out at inventory, eject inventory (and orders at the gateway), and fail every
/// customer's order until the probe. Now the public listener ignores the header, the
/// lookups are one batch per inventory shard, and a deadline cut short by the caller
/// is no verdict on the callee.
#[tokio::test]
async fn one_key_with_tiny_deadlines_cannot_take_order_placement_down() {
    let shop = Topology::shop().shards("inventory", 2).start().await;
    shop.create_product("tea", 450, 100).await;
    let unknown: Vec<String> = (0..50).map(|i| format!("no-such-{i}")).collect();
    let lines: Vec<(&str, i64)> = unknown.iter().map(|s| (s.as_str(), 1)).collect();
    let attack = order_body(&lines, None);

    const ATTACKS: usize = 8;
    let mut answers = Vec::new();
    for _ in 0..ATTACKS {
        let res = shop
            .client
            .post(format!("{}/orders", shop.api))
            .header("x-svc-deadline-ms", "3")
            .json(&attack)
            .send()
            .await
            .expect("attack request");
        answers.push(res.status().as_u16());
        // The attack's own pace (2 requests/s), not a wait for anything.
        tokio::time::sleep(Duration::from_millis(500)).await;
    }

    // A customer's order right after the attack goes through.
    let placed = shop
        .place_order(&order_body(&[("tea", 1)], None), None)
        .await;
    assert_eq!(placed.status, 201, "the customer's order: {placed:?}");
    assert_eq!(placed.body["status"], "confirmed", "{placed:?}");

    // No breaker opened: orders at the gateway, inventory at orders.
    for (id, dependency) in [("gateway-0", "orders"), ("orders-0", "inventory")] {
        let text = metrics_of(&shop[id]).await;
        let ejections = sample(
            &text,
            "svc_client_ejections_total",
            &[("dependency", dependency)],
        );
        assert_eq!(ejections, 0.0, "{id} ejected an instance of {dependency}");
        let open = sample(
            &text,
            "svc_client_breaker_state",
            &[("dependency", dependency)],
        );
        assert_eq!(open, 0.0, "{id}: a breaker of {dependency} is not closed");
    }

    // The attacker only learnt that the products do not exist, within the gateway's
    // own time limit.
    assert!(
        answers.iter().all(|s| *s == 422),
        "attack answers: {answers:?}"
    );

    // One lookup per inventory shard and attack, never one per line.
    let (mut per_sku, mut batches) = (0.0, 0.0);
    for inventory in shop.instances("inventory") {
        let text = metrics_of(inventory).await;
        let route = |route| [("route", route)];
        per_sku += sample(
            &text,
            "http_server_requests_total",
            &route("/v1/products/{sku}"),
        );
        batches += sample(
            &text,
            "http_server_requests_total",
            &route("/v1/product-lookups"),
        );
    }
    // The customer's order named one product: at most one lookup more.
    assert!(
        batches <= (2 * ATTACKS + 1) as f64,
        "{batches} batch lookups"
    );
    assert_eq!(per_sku, 0.0, "orders looked products up one by one");
}

/// Issue 13, point 2: unauthenticated requests with invented methods used to become
/// new `method` label values on every listener. Labels take their values from fixed
/// sets: known methods, else `other`.
#[tokio::test]
async fn made_up_methods_do_not_grow_the_metrics() {
    let cluster = Topology::new()
        .gateways(1)
        .shards("inventory", 1)
        .start()
        .await;
    let public = plain_client();
    let gateway = &cluster["gateway-0"];
    let inventory = &cluster["inventory-0"];
    let registry = cluster.registry();
    let targets = [
        (&public, format!("{}/api/v1/products", gateway.url)),
        (&public, format!("{}/nowhere", gateway.url)),
        (&cluster.client, format!("{}/metrics", gateway.internal_url)),
        (&cluster.client, format!("{}/v1/products", inventory.url)),
        (&cluster.client, format!("{}/v1/catalog", registry.url)),
    ];
    for i in 0..20 {
        let method = Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
        for (client, url) in &targets {
            let res = client.request(method.clone(), url).send().await;
            let res = res.unwrap_or_else(|e| panic!("{method} {url}: {e}"));
            assert!(res.status().is_client_error(), "{method} {url}: {res:?}");
        }
    }
    for svc in [gateway, inventory, registry] {
        let text = metrics_of(svc).await;
        assert!(!text.contains("BREW"), "{}: {text}", svc.label);
        let other = sample(&text, "http_server_requests_total", &[("method", "other")]);
        assert!(
            other >= 20.0,
            "{}: {other} requests labelled `other`",
            svc.label
        );
    }
}

/// Issue 13, point 7: the public listener read `x-svc-deadline-ms` before the API key
/// was checked, so an outsider without a key got a 504. Nothing internal is read
/// there now, before the key or after.
#[tokio::test]
async fn internal_headers_are_not_read_at_the_public_listener() {
    let cluster = Topology::new()
        .gateways(1)
        .shards("inventory", 1)
        .start()
        .await;
    let outsider = plain_client();
    let url = format!("{}/products", cluster.api);
    let res = outsider
        .get(&url)
        .header("x-svc-deadline-ms", "0")
        .send()
        .await
        .unwrap();
    assert_problem(res, 401, "no key, an expired internal deadline").await;

    // With a key, the header changes nothing either.
    let res = cluster
        .client
        .get(&url)
        .header("x-svc-deadline-ms", "0")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let body: Value = cluster.get_ok(&url).await;
    assert!(body["products"].is_array(), "{body}");
}
