//! Bad input at the internal endpoints (what orders and the outbox relay call): every
//! refusal is problem+json with a fitting status, and nothing is written.

use crate::harness::*;
use serde_json::{json, Value};

/// POSTs `body` as orders, the caller these endpoints accept (payments, reservations,
/// events): what is refused below is refused for the input, not the caller.
async fn send_raw(url: &str, body: &str) -> reqwest::Response {
    client_as("orders")
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_string())
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

#[tokio::test]
async fn internal_endpoints_refuse_bad_input_and_write_nothing() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let inventory = sandbox.start("inventory", "inv-0", &registry.url);
    let payments = sandbox.start("payments", "pay-0", &registry.url);
    let notifications = sandbox.start("notifications", "not-0", &registry.url);
    let created = post_json_as(
        "gateway",
        &format!("{}/v1/products", inventory.url),
        &product("tea"),
    )
    .await;
    assert_eq!(created.status(), 201);

    let reservations = format!("{}/v1/reservations", inventory.url);
    let line = |sku: &str, q: i64| json!({"sku": sku, "quantity": q});
    let many: Vec<Value> = (0..51).map(|i| line(&format!("s{i}"), 1)).collect();
    for (what, body, status) in [
        ("malformed JSON", "{\"order_id\":".to_string(), 400),
        ("missing lines", json!({"order_id": "o1"}).to_string(), 400),
        (
            "extra field",
            json!({"order_id": "o1", "lines": [line("tea", 1)], "x": 1}).to_string(),
            400,
        ),
        (
            "zero quantity",
            json!({"order_id": "o1", "lines": [line("tea", 0)]}).to_string(),
            400,
        ),
        (
            "negative quantity",
            json!({"order_id": "o1", "lines": [line("tea", -1)]}).to_string(),
            400,
        ),
        (
            "huge quantity",
            json!({"order_id": "o1", "lines": [line("tea", 1_000_000)]}).to_string(),
            400,
        ),
        (
            "too many lines",
            json!({"order_id": "o1", "lines": many}).to_string(),
            400,
        ),
        (
            "bad order id",
            json!({"order_id": "a/b", "lines": [line("tea", 1)]}).to_string(),
            400,
        ),
        (
            "unknown product",
            json!({"order_id": "o1", "lines": [line("nope", 1)]}).to_string(),
            404,
        ),
    ] {
        assert_problem(send_raw(&reservations, &body).await, status, what).await;
    }
    let held = get_json(&format!("{reservations}?status=held")).await;
    assert_eq!(
        held["reservations"].as_array().map(Vec::len),
        Some(0),
        "{held}"
    );
    let tea = get_json(&format!("{}/v1/products/tea", inventory.url)).await;
    assert_eq!(
        (tea["available"].as_u64(), tea["reserved"].as_u64()),
        (Some(7), Some(0))
    );
    let unknown = post_json_as("orders", &format!("{reservations}/o404/commit"), &json!({})).await;
    assert_problem(unknown, 404, "commit of an unknown reservation").await;

    // The batch lookup orders makes before it stores an order.
    let lookups = format!("{}/v1/product-lookups", inventory.url);
    let skus = |skus: Vec<String>| json!({ "skus": skus }).to_string();
    for (what, body) in [
        ("malformed JSON", "{\"skus\":".to_string()),
        ("no SKUs", skus(Vec::new())),
        ("a dot segment", skus(vec!["tea".into(), "..".into()])),
        ("too many SKUs", skus(vec!["tea".into(); 1001])),
        ("extra field", json!({"skus": ["tea"], "x": 1}).to_string()),
    ] {
        assert_problem(send_raw(&lookups, &body).await, 400, what).await;
    }
    let answer = send_raw(&lookups, &skus(vec!["nope".into(), "tea".into()])).await;
    assert_eq!(answer.status(), 200);
    let answer: Value = answer.json().await.unwrap();
    assert_eq!(answer, json!({"known": ["tea"], "unknown": ["nope"]}));

    let authorize = format!("{}/v1/payments/o1/authorize", payments.url);
    for (what, body) in [
        ("malformed JSON", "{".to_string()),
        ("zero amount", json!({"amount_minor": 0}).to_string()),
        ("negative amount", json!({"amount_minor": -5}).to_string()),
        (
            "huge amount",
            json!({"amount_minor": 10_000_000_000_000u64}).to_string(),
        ),
        (
            "extra field",
            json!({"amount_minor": 5, "tip": 1}).to_string(),
        ),
        (
            "bad card",
            json!({"amount_minor": 5, "card": "abc"}).to_string(),
        ),
    ] {
        assert_problem(send_raw(&authorize, &body).await, 400, what).await;
    }
    let capture = post_json_as(
        "orders",
        &format!("{}/v1/payments/o404/capture", payments.url),
        &json!({}),
    )
    .await;
    assert_problem(capture, 404, "capture of an unknown payment").await;
    let ledger = get_json(&format!("{}/v1/ledger", payments.url)).await;
    assert_eq!(
        ledger["entries"].as_array().map(Vec::len),
        Some(0),
        "{ledger}"
    );

    let events = format!("{}/v1/events", notifications.url);
    let event = |kind: &str, payload: Value| {
        json!({"id": "evt-x-1", "kind": kind, "producer": "orders-0", "seq": 1,
               "occurred_at_ms": 0, "payload": payload})
        .to_string()
    };
    for (what, body) in [
        ("malformed JSON", "[".to_string()),
        ("missing fields", json!({"id": "e"}).to_string()),
        (
            "unknown kind",
            event("order.shipped", json!({"order_id": "o1"})),
        ),
        ("payload without order", event("order.confirmed", json!({}))),
        ("an empty batch", "[]".to_string()),
        (
            // A batch is recorded whole or not at all: the good event is not kept.
            "a batch with one bad event",
            format!(
                "[{}, {}]",
                json!({"id": "evt-x-2", "kind": "order.confirmed", "producer": "orders-0",
                       "seq": 2, "occurred_at_ms": 0, "payload": {"order_id": "o2"}}),
                event("order.shipped", json!({"order_id": "o1"}))
            ),
        ),
    ] {
        assert_problem(send_raw(&events, &body).await, 400, what).await;
    }
    let all = get_json(&format!("{}/v1/notifications", notifications.url)).await;
    assert_eq!(
        all["notifications"].as_array().map(Vec::len),
        Some(0),
        "{all}"
    );

    // A body over the limit is 413 at every role.
    let big = format!("{{\"order_id\":\"{}\"}}", "x".repeat(70 * 1024));
    assert_problem(send_raw(&reservations, &big).await, 413, "oversized body").await;
}
