//! Bad input at the public edge (issue 13): each is refused with a `problem+json` 4xx
//! before anything is written, where it used to slip through or be answered wrongly.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::harness::*;
use reqwest::header::HeaderValue;
use serde_json::json;

/// The gateway, one inventory shard and the registry: enough for the product routes.
async fn gateway_and_inventory() -> Cluster {
    Topology::new()
        .gateways(1)
        .shards("inventory", 1)
        .start()
        .await
}

/// Sends `method path` to the plain-HTTP public listener at `base` exactly as written
/// (an HTTP library would resolve `..` itself), with the test API key; returns the
/// status and the whole answer.
fn raw_request(base: &str, method: &str, path: &str) -> (u16, String) {
    let addr = base.trim_start_matches("http://").trim_end_matches('/');
    let mut stream = TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let request = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nX-Api-Key: {TEST_API_KEY}\r\n\
         Content-Type: application/json\r\nContent-Length: 2\r\nConnection: close\r\n\r\n{{}}"
    );
    stream.write_all(request.as_bytes()).unwrap();
    let mut answer = Vec::new();
    stream
        .read_to_end(&mut answer)
        .expect("an answer, then close");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let status = answer
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{method} {path}: no status in {answer:?}"));
    (status, answer)
}

/// Every order the shop holds, and the stock of `sku`: what a refused create must
/// leave as it was.
async fn written(shop: &Cluster, sku: &str) -> (usize, (u64, u64, u64)) {
    (shop.all_orders().await.len(), shop.stock(sku).await)
}

/// Point 5: a key with one byte that is not visible ASCII was dropped by the gateway,
/// which forwarded the create without a key: every retry created (and charged)
/// another order.
#[tokio::test]
async fn an_idempotency_key_that_is_not_visible_ascii_is_refused() {
    let shop = Topology::shop().start().await;
    shop.create_product("tea", 450, 10).await;
    let before = written(&shop, "tea").await;
    let body = order_body(&[("tea", 1)], None);
    let bad_keys: [&[u8]; 4] = [b"retry-\xff-1", b"caf\xc3\xa9", b"two words", b""];
    for key in bad_keys {
        for _attempt in 0..2 {
            let res = shop
                .client
                .post(format!("{}/orders", shop.api))
                .header("idempotency-key", HeaderValue::from_bytes(key).unwrap())
                .json(&body)
                .send()
                .await
                .unwrap();
            assert_problem(res, 400, &format!("key {key:?}")).await;
        }
    }
    let long = "k".repeat(256);
    let res = shop
        .client
        .post(format!("{}/orders", shop.api))
        .header("idempotency-key", long)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "a 256-character key").await;
    assert_eq!(written(&shop, "tea").await, before, "nothing is written");
}

/// Point 8: `.` and `..` passed the id check and became dot segments of the internal
/// URL the gateway built, which then named another endpoint.
#[tokio::test]
async fn dot_segments_are_not_ids() {
    let cluster = gateway_and_inventory().await;
    let base = &cluster["gateway-0"].url;
    for (method, path) in [
        ("GET", "/api/v1/products/%2E%2E"),
        ("GET", "/api/v1/products/."),
        ("GET", "/api/v1/products/.."),
        ("POST", "/api/v1/products/%2e%2e/stock"),
        ("POST", "/api/v1/products/./stock"),
        ("GET", "/api/v1/orders/%2E%2E"),
        ("POST", "/api/v1/orders/../cancel"),
        ("GET", "/api/v1/orders/%2E/payment"),
        ("GET", "/api/v1/orders/../notifications"),
    ] {
        let (status, answer) = raw_request(base, method, path);
        assert_eq!(status, 400, "{method} {path}: {answer}");
        assert!(
            answer.contains("application/problem+json"),
            "{method} {path}: {answer}"
        );
    }
}

/// Point 9: orders took a card of 20 to 32 digits that payments then refused: the
/// order was created, stock reserved and released, and it ended cancelled.
#[tokio::test]
async fn a_card_payments_would_refuse_is_refused_before_anything_is_written() {
    let shop = Topology::shop().start().await;
    shop.create_product("tea", 450, 10).await;
    let before = written(&shop, "tea").await;
    let twenty = "4".repeat(20);
    let thirty_two = "4".repeat(32);
    for card in [&twenty, &thirty_two, "42424242424", "4242 4242 x"] {
        let res = shop
            .client
            .post(format!("{}/orders", shop.api))
            .json(&order_body(&[("tea", 1)], Some(card)))
            .send()
            .await
            .unwrap();
        assert_problem(res, 400, &format!("card {card}")).await;
    }
    assert_eq!(written(&shop, "tea").await, before, "nothing is written");
    // The rule's own edges still pass: 12 and 19 digits, spaces and dashes.
    for card in ["4242 4242 4242", "4242-4242-4242-4242-424"] {
        let order = shop
            .place_final(&order_body(&[("tea", 1)], Some(card)))
            .await;
        assert_eq!(order["status"], "confirmed", "card {card}: {order}");
    }
}

/// Point 10: product names took control characters (NUL, escape sequences, bidi
/// overrides, CR/LF), which then reach every log and screen that shows them.
#[tokio::test]
async fn control_characters_in_product_names_are_refused() {
    let cluster = gateway_and_inventory().await;
    for (i, name) in [
        "Green\0tea",
        "\u{1b}[31mRed tea",
        "Tea \u{202e}aet",
        "Tea\r\nX-Injected: 1",
        "Tea\u{85}more",
        "Tab\tTea",
    ]
    .into_iter()
    .enumerate()
    {
        let sku = format!("ctl-{i}");
        let body = json!({ "sku": sku, "name": name, "price_minor": 100, "stock": 1 });
        let res = post_json(&format!("{}/products", cluster.api), &body).await;
        assert_problem(res, 400, &format!("name {name:?}")).await;
        let (status, _, _) = cluster
            .get(&format!("{}/products/{sku}", cluster.api))
            .await;
        assert_eq!(status, 404, "{sku} was written");
    }
    // Letters of any script stay welcome.
    let body = json!({ "sku": "ok-1", "name": "Thé vert 緑茶", "price_minor": 100, "stock": 1 });
    let res = post_json(&format!("{}/products", cluster.api), &body).await;
    assert_eq!(res.status(), 201, "{:?}", res.text().await);
}

/// Point 11: a wrong method on a known route answered 404, as if the route did not
/// exist; it is 405 with `Allow`, on the public API and on internal listeners.
#[tokio::test]
async fn a_wrong_method_on_a_known_route_is_405_with_allow() {
    let cluster = gateway_and_inventory().await;
    let allow = |res: &reqwest::Response| header(res, "allow").unwrap_or_default();
    let api = &cluster.api;
    for (method, url, allowed) in [
        (
            reqwest::Method::DELETE,
            format!("{api}/products"),
            "GET, POST",
        ),
        (reqwest::Method::PUT, format!("{api}/orders/ord-0-x"), "GET"),
        (
            reqwest::Method::GET,
            format!("{api}/orders/ord-0-x/cancel"),
            "POST",
        ),
        (
            reqwest::Method::DELETE,
            format!("{}/v1/products", cluster["inventory-0"].url),
            "GET, POST",
        ),
        (
            reqwest::Method::POST,
            format!("{}/metrics", cluster["inventory-0"].url),
            "GET",
        ),
    ] {
        let res = cluster
            .client
            .request(method.clone(), &url)
            .send()
            .await
            .unwrap();
        let got = allow(&res);
        assert_problem(res, 405, &format!("{method} {url}")).await;
        assert_eq!(got, allowed, "{method} {url}");
    }
    // A path no route serves is still 404.
    let res = cluster
        .client
        .get(format!("{api}/nothing/here"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "an unknown path").await;
}
