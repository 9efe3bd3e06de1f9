//! The order flow end to end, through the gateway's public API: each test starts its own
//! full cluster (registry, inventory, payments, orders, notifications, gateway) and
//! checks what every role holds afterwards.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::harness::*;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};

/// How long an event may take to reach notifications (the relay retries with backoff).
const DELIVERY: Duration = Duration::from_secs(15);

/// Waits until order `id` has a notification, then returns all of its notifications.
async fn wait_order_notified(shop: &Cluster, id: &str) -> Vec<Value> {
    let url = format!("{}/orders/{id}/notifications", shop.api);
    wait_for(&format!("a notification of {id}"), DELIVERY, || async {
        let body = try_get_json(&url).await?;
        match body["notifications"].as_array() {
            Some(list) if !list.is_empty() => Ok(list.clone()),
            _ => Err(format!("none yet: {body}")),
        }
    })
    .await
    .0
}

#[tokio::test]
async fn confirmed_order_sells_stock_captures_payment_and_notifies() {
    let shop = Topology::shop().start().await;
    shop.create_product("tea", 450, 10).await;

    let placed = shop
        .place_order(&order_body(&[("tea", 2)], None), None)
        .await;
    assert_eq!(placed.status, 201, "{placed:?}");
    let order = &placed.body;
    let id = placed.id();
    assert_eq!(order["status"], "confirmed", "{order}");
    assert_eq!(order["total_minor"], 900, "{order}");
    assert_eq!(order["lines"][0]["price_minor"], 450, "{order}");
    assert!(order["reason"].is_null(), "{order}");
    assert!(order.get("card").is_none(), "{order}");
    assert_eq!(
        placed.location.as_deref(),
        Some(format!("/api/v1/orders/{id}").as_str())
    );
    assert_eq!(&shop.order(&id).await, order);

    let product = shop.product("tea").await;
    assert_eq!(product["available"], 8, "{product}");
    assert_eq!(product["reserved"], 0, "{product}");
    assert_eq!(product["sold"], 2, "{product}");

    let (status, payment) = shop.payment(&id).await;
    assert_eq!(status, 200, "{payment}");
    assert_eq!(payment["order_id"], id.as_str(), "{payment}");
    assert_eq!(payment["status"], "captured", "{payment}");
    assert_eq!(payment["amount_minor"], 900, "{payment}");

    let notes = wait_order_notified(&shop, &id).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["kind"], "order.confirmed", "{notes:?}");
    assert_eq!(notes[0]["order_id"], id.as_str());
    assert!(notes[0]["event_id"].as_str().is_some_and(|e| !e.is_empty()));
    assert!(
        notes[0]["message"]
            .as_str()
            .unwrap_or_default()
            .contains(&id),
        "{notes:?}"
    );

    let ledger = shop.ledger().await;
    assert_eq!(ledger["captured_total_minor"], 900, "{ledger}");
    assert_eq!(ledger["authorized_open_minor"], 0, "{ledger}");
    shop.assert_settled(&[("tea", 10)], std::slice::from_ref(order))
        .await;
}

#[tokio::test]
async fn out_of_stock_cancels_and_leaves_stock_alone() {
    let shop = Topology::shop().start().await;
    shop.create_product("tea", 450, 10).await;

    let placed = shop
        .place_order(&order_body(&[("tea", 11)], None), None)
        .await;
    assert_eq!(placed.status, 201, "{placed:?}");
    let order = &placed.body;
    let id = placed.id();
    assert_eq!(order["status"], "cancelled", "{order}");
    let reason = order["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("out of stock"), "{order}");
    assert!(
        reason.contains("tea (requested 11, available 10)"),
        "{order}"
    );

    assert_eq!(shop.stock("tea").await, (10, 0, 0));
    // Payments never authorized: no record, or the compensation's void tombstone.
    match shop.payment(&id).await {
        (404, _) => {}
        (200, p) => assert_eq!(p["status"], "voided", "{p}"),
        other => panic!("payment of {id}: {other:?}"),
    }
    let notes = wait_order_notified(&shop, &id).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["kind"], "order.cancelled", "{notes:?}");
    shop.assert_settled(&[("tea", 10)], std::slice::from_ref(order))
        .await;
}

#[tokio::test]
async fn declined_card_cancels_and_releases_the_reservation() {
    let shop = Topology::shop().start().await;
    shop.create_product("tea", 450, 10).await;

    let placed = shop
        .place_order(&order_body(&[("tea", 3)], Some(DECLINED_CARD)), None)
        .await;
    assert_eq!(placed.status, 201, "{placed:?}");
    let order = &placed.body;
    let id = placed.id();
    assert_eq!(order["status"], "cancelled", "{order}");
    assert!(
        order["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("declined"),
        "{order}"
    );
    assert!(order.get("card").is_none(), "card echoed: {order}");

    assert_eq!(shop.stock("tea").await, (10, 0, 0));
    let (status, payment) = shop.payment(&id).await;
    assert_eq!(status, 200, "{payment}");
    assert_eq!(payment["status"], "declined", "{payment}");
    let ledger = shop.ledger().await;
    assert_eq!(ledger["captured_total_minor"], 0, "{ledger}");
    assert!(
        ledger["entries"]
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["kind"] != "capture"),
        "{ledger}"
    );
    let notes = wait_order_notified(&shop, &id).await;
    assert_eq!(notes.len(), 1, "{notes:?}");
    assert_eq!(notes[0]["kind"], "order.cancelled", "{notes:?}");
    shop.assert_settled(&[("tea", 10)], std::slice::from_ref(order))
        .await;
}

#[tokio::test]
async fn idempotency_key_creates_one_order() {
    let shop = Topology::shop().start().await;
    shop.create_product("tea", 450, 10).await;
    let body = order_body(&[("tea", 1)], None);

    // Sequentially: the replay answers 200 with the same order.
    let first = shop.place_order(&body, Some("key-seq-1")).await;
    assert_eq!(first.status, 201, "{first:?}");
    let again = shop.place_order(&body, Some("key-seq-1")).await;
    assert_eq!(again.status, 200, "{again:?}");
    assert_eq!(again.body, first.body);
    assert_eq!(shop.stock("tea").await, (9, 0, 1));

    // Concurrently with a fresh key: one order, whoever wins.
    let placed = futures::future::join_all(
        (0..8).map(|_| shop.place_order(&body, Some("key-concurrent-1"))),
    )
    .await;
    let id = placed[0].id();
    for p in &placed {
        assert_eq!(p.id(), id, "{placed:?}");
        assert_eq!(p.body["status"], "confirmed", "{p:?}");
    }
    let created = placed.iter().filter(|p| p.status == 201).count();
    let replayed = placed.iter().filter(|p| p.status == 200).count();
    assert_eq!((created, replayed), (1, 7), "{placed:?}");
    let orders = shop.all_orders().await;
    let ids: Vec<&str> = orders.iter().map(|o| o["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 2, "{ids:?}");
    assert!(ids.contains(&id.as_str()) && ids.contains(&first.id().as_str()));
    assert_eq!(shop.stock("tea").await, (8, 0, 2));

    // The same key with another request is refused and writes nothing.
    let other = shop
        .client
        .post(format!("{}/orders", shop.api))
        .header("idempotency-key", "key-seq-1")
        .json(&order_body(&[("tea", 2)], None))
        .send()
        .await
        .unwrap();
    assert_problem(other, 422, "key reused with another body").await;
    assert_eq!(shop.all_orders().await.len(), 2);
    assert_eq!(shop.stock("tea").await, (8, 0, 2));
    shop.assert_settled(&[("tea", 10)], &orders).await;
}

#[tokio::test]
async fn concurrent_orders_keep_stock_payments_and_notifications_consistent() {
    const ORDERS: usize = 300;
    const TASKS: usize = 16;
    let stock = [
        ("tea", 450u64, 50u64),
        ("cake", 1200, 80),
        ("mug", 800, 1000),
    ];
    let shop = Topology::shop().start().await;
    for (sku, price, units) in stock {
        shop.create_product(sku, price, units).await;
    }

    let seed: u64 = rand::random();
    eprintln!("order mix seed: {seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let bodies: Vec<Value> = (0..ORDERS)
        .map(|i| {
            let first = rng.random_range(0..stock.len());
            let mut lines = vec![(stock[first].0, rng.random_range(1..=3))];
            if rng.random_bool(0.5) {
                let second = (first + rng.random_range(1..stock.len())) % stock.len();
                lines.push((stock[second].0, rng.random_range(1..=3)));
            }
            let card = (i % 25 == 7).then_some(DECLINED_CARD);
            order_body(&lines, card)
        })
        .collect();

    let started = Instant::now();
    let next = Arc::new(AtomicUsize::new(0));
    let workers = (0..TASKS).map(|_| {
        let (next, shop, bodies) = (next.clone(), &shop, &bodies);
        async move {
            let mut answered = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                let Some(body) = bodies.get(i) else {
                    return answered;
                };
                let placed = shop.place_order(body, None).await;
                assert!(
                    matches!(placed.status, 201 | 202),
                    "order {i} {body}: {placed:?}"
                );
                answered.push((placed.id(), body.get("card").is_some()));
            }
        }
    });
    let placed: Vec<(String, bool)> = futures::future::join_all(workers)
        .await
        .into_iter()
        .flatten()
        .collect();
    let placed_in = started.elapsed();
    assert_eq!(placed.len(), ORDERS);

    let orders = shop.wait_all_final(Duration::from_secs(30)).await;
    assert_eq!(orders.len(), ORDERS, "orders listed");
    // Small pages walk the same list, in the same order.
    assert_eq!(shop.try_all_orders(7).await.unwrap(), orders, "pages of 7");
    let confirmed = orders.iter().filter(|o| o["status"] == "confirmed").count();
    let reason = |o: &Value| o["reason"].as_str().unwrap_or_default().to_string();
    let mut declined = 0;
    for (id, declined_card) in &placed {
        let o = orders
            .iter()
            .find(|o| o["id"] == id.as_str())
            .unwrap_or_else(|| panic!("order {id} not listed"));
        if *declined_card {
            // Refused by payments, or by inventory before payments was asked.
            assert_eq!(o["status"], "cancelled", "{o}");
            let r = reason(o);
            assert!(r.contains("declined") || r.contains("out of stock"), "{o}");
            declined += usize::from(r.contains("declined"));
        } else if o["status"] == "cancelled" {
            assert!(reason(o).contains("out of stock"), "{o}");
        }
    }
    eprintln!(
        "{ORDERS} orders placed in {placed_in:?}: {confirmed} confirmed, {declined} declined, {} cancelled",
        ORDERS - confirmed
    );
    assert!(confirmed > 0, "no order was confirmed");
    let initial: Vec<(&str, u64)> = stock.iter().map(|(s, _, n)| (*s, *n)).collect();
    shop.assert_settled(&initial, &orders).await;
    eprintln!("settled after {:?}", started.elapsed());
}

#[tokio::test]
async fn bad_orders_are_problems_and_write_nothing() {
    let shop = Topology::shop().start().await;
    shop.create_product("tea", 450, 10).await;
    let confirmed = shop.place_final(&order_body(&[("tea", 1)], None)).await;
    assert_eq!(confirmed["status"], "confirmed", "{confirmed}");
    let confirmed_id = confirmed["id"].as_str().unwrap().to_string();
    let before_orders = shop.all_orders().await;
    let before_stock = shop.product("tea").await;

    let orders_url = format!("{}/orders", shop.api);
    let post_raw = |body: String| {
        shop.client
            .post(&orders_url)
            .header("content-type", "application/json")
            .body(body)
            .send()
    };
    let post = |body: Value| shop.client.post(&orders_url).json(&body).send();
    let line = |sku: &str, quantity: i64| json!({ "sku": sku, "quantity": quantity });

    let cases: Vec<(&str, reqwest::Response, u16)> = vec![
        (
            "malformed JSON",
            post_raw(r#"{"lines": [{"sku": "tea", "#.into())
                .await
                .unwrap(),
            400,
        ),
        ("missing lines", post(json!({})).await.unwrap(), 400),
        (
            "empty lines",
            post(json!({ "lines": [] })).await.unwrap(),
            400,
        ),
        (
            "extra field",
            post(json!({ "lines": [line("tea", 1)], "coupon": "FREE" }))
                .await
                .unwrap(),
            400,
        ),
        (
            "extra line field",
            post(json!({ "lines": [{ "sku": "tea", "quantity": 1, "price_minor": 1 }] }))
                .await
                .unwrap(),
            400,
        ),
        (
            "quantity as a string",
            post(json!({ "lines": [{ "sku": "tea", "quantity": "1" }] }))
                .await
                .unwrap(),
            400,
        ),
        (
            "unknown product",
            post(json!({ "lines": [line("nope", 1)] })).await.unwrap(),
            422,
        ),
        (
            "unknown product next to a known one",
            post(json!({ "lines": [line("tea", 1), line("nope", 1)] }))
                .await
                .unwrap(),
            422,
        ),
        (
            "quantity 0",
            post(json!({ "lines": [line("tea", 0)] })).await.unwrap(),
            400,
        ),
        (
            "negative quantity",
            post(json!({ "lines": [line("tea", -2)] })).await.unwrap(),
            400,
        ),
        (
            "quantity 1001",
            post(json!({ "lines": [line("tea", 1001)] })).await.unwrap(),
            400,
        ),
        (
            "51 lines",
            post(json!({
                "lines": (0..51).map(|i| line(&format!("sku-{i}"), 1)).collect::<Vec<_>>()
            }))
            .await
            .unwrap(),
            400,
        ),
        (
            "the same sku twice",
            post(json!({ "lines": [line("tea", 1), line("tea", 2)] }))
                .await
                .unwrap(),
            400,
        ),
        (
            "bad sku characters",
            post(json!({ "lines": [line("te a", 1)] })).await.unwrap(),
            400,
        ),
        (
            "bad card",
            post(json!({ "lines": [line("tea", 1)], "card": "12ab" }))
                .await
                .unwrap(),
            400,
        ),
        (
            "body over 64 KiB",
            post(json!({ "lines": [line("tea", 1)], "card": "4".repeat(70 * 1024) }))
                .await
                .unwrap(),
            413,
        ),
        (
            "bad idempotency key",
            shop.client
                .post(&orders_url)
                .header("idempotency-key", "k".repeat(300))
                .json(&order_body(&[("tea", 1)], None))
                .send()
                .await
                .unwrap(),
            400,
        ),
        (
            "unknown order id",
            shop.client
                .get(format!("{orders_url}/ord-0-nosuchorder"))
                .send()
                .await
                .unwrap(),
            404,
        ),
        (
            "cancel of an unknown order",
            shop.client
                .post(format!("{orders_url}/ord-0-nosuchorder/cancel"))
                .send()
                .await
                .unwrap(),
            404,
        ),
        (
            "cancel of a confirmed order",
            shop.client
                .post(format!("{orders_url}/{confirmed_id}/cancel"))
                .send()
                .await
                .unwrap(),
            409,
        ),
        (
            "invalid order id characters",
            shop.client
                .get(format!("{orders_url}/bad!id"))
                .send()
                .await
                .unwrap(),
            400,
        ),
        (
            "invalid order id with a space",
            shop.client
                .get(format!("{orders_url}/bad%20id"))
                .send()
                .await
                .unwrap(),
            400,
        ),
        (
            "order id too long",
            shop.client
                .get(format!("{orders_url}/{}", "o".repeat(65)))
                .send()
                .await
                .unwrap(),
            400,
        ),
        (
            "invalid id on cancel",
            shop.client
                .post(format!("{orders_url}/bad!id/cancel"))
                .send()
                .await
                .unwrap(),
            400,
        ),
        (
            "bad list limit",
            shop.client
                .get(format!("{orders_url}?limit=0"))
                .send()
                .await
                .unwrap(),
            400,
        ),
    ];
    for (what, res, status) in cases {
        assert_problem(res, status, what).await;
    }

    // Nothing was written: the same orders (the confirmed one still confirmed), the
    // same stock.
    assert_eq!(shop.all_orders().await, before_orders);
    assert_eq!(shop.product("tea").await, before_stock);
    let held = shop.held_reservations().await;
    assert!(held.is_empty(), "{held:?}");
}

/// The JSON log lines of `svc` carrying `trace_id`.
fn traced_lines(svc: &Svc, trace_id: &str) -> Vec<Value> {
    svc.stderr()
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["trace_id"] == trace_id)
        .collect()
}

/// Places an order with a `traceparent` on a cluster logging JSON at debug; returns the
/// cluster and the trace id.
async fn traced_order() -> (Cluster, &'static str) {
    let shop = Topology::shop().json_debug_logs().start().await;
    shop.create_product("tea", 450, 10).await;

    let trace_id = "0af7651916cd43dd8448eb211c80319c";
    let res = shop
        .client
        .post(format!("{}/orders", shop.api))
        .header("traceparent", format!("00-{trace_id}-b7ad6b7169203331-01"))
        .json(&order_body(&[("tea", 1)], None))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(res.headers()["x-request-id"], trace_id);
    let order: Value = res.json().await.unwrap();
    assert_eq!(order["status"], "confirmed", "{order}");
    (shop, trace_id)
}

/// Waits up to 10 s until each `(instance, path prefix)` logged a request under
/// `trace_id`; fails naming every one that did not.
async fn assert_traced(trace_id: &str, expect: &[(&Svc, &str)]) {
    let logged = |svc: &Svc, path: &str| {
        traced_lines(svc, trace_id)
            .iter()
            .any(|l| l["path"].as_str().is_some_and(|p| p.starts_with(path)))
    };
    wait_until(Duration::from_secs(10), || {
        expect.iter().all(|(svc, path)| logged(svc, path))
    })
    .await;
    let missing: Vec<String> = expect
        .iter()
        .filter(|(svc, path)| !logged(svc, path))
        .map(|(svc, path)| {
            format!(
                "{} logged no `{path}` request under trace {trace_id}; its traced lines: {:?}",
                svc.label,
                traced_lines(svc, trace_id)
            )
        })
        .collect();
    assert!(missing.is_empty(), "{}", missing.join("\n"));
}

#[tokio::test]
async fn the_trace_of_an_order_request_reaches_gateway_orders_and_inventory() {
    let (shop, trace_id) = traced_order().await;
    // The gateway and orders log the request itself; inventory the product check that
    // orders makes while handling it.
    assert_traced(
        trace_id,
        &[
            (&shop["gateway-0"], "/api/v1/orders"),
            (&shop["orders-0"], "/v1/orders"),
            (&shop["inventory-0"], "/v1/product-lookups"),
        ],
    )
    .await;
    let created = traced_lines(&shop["orders-0"], trace_id)
        .into_iter()
        .find(|l| l["msg"] == "order created");
    assert!(
        created.is_some(),
        "orders did not log the creation under the trace"
    );
}

#[tokio::test]
async fn the_trace_of_an_order_follows_its_saga_and_event() {
    let (shop, trace_id) = traced_order().await;
    // Inventory and payments log the saga's calls; notifications the event delivery.
    assert_traced(
        trace_id,
        &[
            (&shop["inventory-0"], "/v1/reservations"),
            (&shop["payments-0"], "/v1/payments/"),
            (&shop["notifications-0"], "/v1/events"),
        ],
    )
    .await;
}

/// Polls `check` until it holds or `timeout` passes; says whether it held.
async fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

#[tokio::test]
async fn orders_asks_inventory_about_a_product_once() {
    let shop = Topology::shop().start().await;
    shop.create_product("tea", 450, 10).await;
    for _ in 0..3 {
        let order = shop.place_final(&order_body(&[("tea", 1)], None)).await;
        assert_eq!(order["status"], "confirmed", "{order}");
    }
    // Products are never deleted, so orders remembers that `tea` exists: one lookup
    // for three orders (the unknown product of `bad_orders_are_problems_and_write_nothing`
    // is asked about every time), and it is the batch lookup, never a GET per SKU.
    let metrics = http()
        .get(format!("{}/metrics", shop["inventory-0"].url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let lookups = metric_sample(
        &metrics,
        "http_server_requests_total",
        &[("route", "/v1/product-lookups"), ("method", "POST")],
    );
    assert_eq!(lookups, Some(1.0), "{metrics}");
    let one_by_one = metric_sample(
        &metrics,
        "http_server_requests_total",
        &[("route", "/v1/products/{sku}")],
    );
    assert_eq!(one_by_one, None, "{metrics}");
}
