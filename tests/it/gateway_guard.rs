//! The guard of the public API, through a whole cluster and over real connections:
//! keys made with `svc keys new`, from the config and from `gateway.api_keys_file`;
//! 401 / 403 / 429 / 413 / 431 / 408 answers; and no key or hash in the gateway's log.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::harness::*;
use serde_json::json;

/// A key made by `svc keys new`: the key and the YAML entry it printed.
struct NewKey {
    key: String,
    sha256: String,
    entry: String,
}

fn new_key(name: &str, scopes: &str, rate: Option<(&str, &str)>) -> NewKey {
    let mut cmd = svc_command();
    cmd.args(["keys", "new", "--name", name, "--scopes", scopes]);
    if let Some((per_second, burst)) = rate {
        cmd.args(["--rate-per-second", per_second, "--burst", burst]);
    }
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let (key, entry) = out.stdout.split_once('\n').expect("key, then the entry");
    assert!(key.starts_with("svck_") && key.len() == 5 + 64, "{key}");
    let sha256 = entry
        .lines()
        .find_map(|l| l.trim().strip_prefix("sha256: "))
        .unwrap_or_else(|| panic!("no sha256 in {entry}"))
        .trim_matches(|c| c == '\'' || c == '"')
        .to_string();
    NewKey {
        key: key.to_string(),
        sha256,
        entry: entry.to_string(),
    }
}

fn indent(text: &str, by: usize) -> String {
    let pad = " ".repeat(by);
    text.lines().map(|l| format!("{pad}{l}\n")).collect()
}

/// A cluster whose gateway knows, from its config, `admin` (every scope, a high
/// rate), `reader` (read scopes, a high rate) and `limited` (products:read, the default
/// rate of 2/s, burst 3), besides the harness's key from its `gateway.api_keys_file`;
/// requests time out after 1 s.
struct Guarded {
    shop: Cluster,
    /// A client that sends no key of its own.
    client: reqwest::Client,
    admin: NewKey,
    reader: NewKey,
    limited: NewKey,
}

async fn guarded_cluster() -> Guarded {
    let all = "products:read,products:write,orders:read,orders:write";
    let admin = new_key("admin", all, Some(("1000", "1000")));
    let reader = new_key(
        "reader",
        "orders:read,products:read",
        Some(("1000", "1000")),
    );
    let limited = new_key("limited", "products:read", None);
    let extra_config = format!(
        "gateway:\n  api_keys:\n{}  rate_limit: {{ per_second: 2, burst: 3 }}\n  request_timeout: 1s\n",
        indent(&format!("{}{}{}", admin.entry, reader.entry, limited.entry), 4),
    );
    let shop = Topology::shop().config(&extra_config).start().await;
    let client = reqwest::Client::builder()
        .use_preconfigured_tls(svc_platform::tls::client_config(&material("operator")))
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client");
    Guarded {
        shop,
        client,
        admin,
        reader,
        limited,
    }
}

impl Guarded {
    fn get(&self, path: &str, key: Option<&NewKey>) -> reqwest::RequestBuilder {
        let req = self.client.get(format!("{}{path}", self.shop.api));
        match key {
            Some(k) => req.header("x-api-key", &k.key),
            None => req,
        }
    }

    fn post(&self, path: &str, key: &NewKey) -> reqwest::RequestBuilder {
        self.client
            .post(format!("{}{path}", self.shop.api))
            .bearer_auth(&key.key)
    }

    /// The gateway's stderr holds no key and no hash of one.
    fn assert_no_secret_logged(&self) {
        let log = self.shop["gateway-0"].stderr();
        for k in [&self.admin, &self.reader, &self.limited] {
            assert!(!log.contains(&k.key), "a key was logged:\n{log}");
            assert!(!log.contains(&k.sha256), "a key's hash was logged:\n{log}");
        }
    }
}

#[tokio::test]
async fn keys_scopes_and_rates_decide_who_gets_in() {
    let g = guarded_cluster().await;

    // The API's description is public.
    let res = g.get("/openapi.json", None).send().await.unwrap();
    assert_eq!(res.status(), 200);

    // A key with the scope gets through, by either header.
    let product = json!({ "sku": "tea", "name": "Green tea", "price_minor": 450, "stock": 7 });
    let res = g
        .post("/products", &g.admin)
        .json(&product)
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        201,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let res = g
        .get("/products/tea", Some(&g.reader))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    // A key that gets in, with a body that is not sent as JSON: 415, as documented.
    let res = g
        .post("/products", &g.admin)
        .header("content-type", "text/plain")
        .body(product.to_string())
        .send()
        .await
        .unwrap();
    assert_problem(res, 415, "text/plain body").await;

    // No key and an unknown key: the same 401, with the challenge.
    let missing = g.get("/products/tea", None).send().await.unwrap();
    assert_eq!(
        header(&missing, "www-authenticate").as_deref(),
        Some("Bearer realm=\"svc\"")
    );
    let missing = assert_problem(missing, 401, "no key").await;
    let unknown = g
        .get("/products/tea", None)
        .bearer_auth(format!("svck_{}", "0".repeat(64)))
        .send()
        .await
        .unwrap();
    assert!(header(&unknown, "www-authenticate").is_some());
    let unknown = assert_problem(unknown, 401, "unknown key").await;
    assert_eq!(missing, unknown);

    // A read-only key may not place an order: 403 naming the scope, not the key.
    let order = order_body(&[("tea", 1)], None);
    let res = g
        .post("/orders", &g.reader)
        .json(&order)
        .send()
        .await
        .unwrap();
    let problem = assert_problem(res, 403, "reader places an order").await;
    let detail = problem["detail"].as_str().unwrap();
    assert!(detail.contains("orders:write"), "{problem}");
    assert!(!detail.contains("reader"), "{problem}");

    // Past the burst: 429 with Retry-After; after waiting that long, served again.
    let mut served = 0;
    let refused = loop {
        let res = g
            .get("/products/tea", Some(&g.limited))
            .send()
            .await
            .unwrap();
        match res.status().as_u16() {
            200 => served += 1,
            429 => break res,
            other => panic!("limited key: {other}"),
        }
        assert!(
            served <= 6,
            "no 429 after {served} requests at 2/s, burst 3"
        );
    };
    assert!(served >= 3, "the burst of 3 is served first, got {served}");
    let retry_after: u64 = header(&refused, "retry-after")
        .and_then(|v| v.parse().ok())
        .expect("Retry-After in whole seconds");
    assert!(retry_after >= 1);
    assert_problem(refused, 429, "past the burst").await;
    tokio::time::sleep(Duration::from_secs(retry_after)).await;
    let res = g
        .get("/products/tea", Some(&g.limited))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "after waiting Retry-After");

    // Who was refused is logged by name; no key or hash is.
    let log = g.shop["gateway-0"].stderr();
    let refusal = |reason: &str, name: &str| {
        log.lines()
            .any(|l| l.contains("API request refused") && l.contains(reason) && l.contains(name))
    };
    assert!(
        refusal("forbidden", "reader"),
        "403 logged by key name:\n{log}"
    );
    assert!(
        refusal("rate_limited", "limited"),
        "429 logged by key name:\n{log}"
    );
    assert!(
        refusal("unauthenticated", "unknown API key"),
        "401 logged:\n{log}"
    );
    g.assert_no_secret_logged();
}

#[tokio::test]
async fn oversized_and_slow_requests_are_cut_off() {
    let g = guarded_cluster().await;

    // A body over http.max_body_bytes (64 KiB) from a valid key: 413.
    let big = json!({ "sku": "big", "name": "x".repeat(70_000), "price_minor": 1, "stock": 1 });
    let res = g
        .post("/products", &g.admin)
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_problem(res, 413, "oversized body").await;

    // Headers over gateway.max_header_bytes (16 KiB): 431.
    let res = g
        .get("/products", Some(&g.admin))
        .header("x-padding", "x".repeat(20_000))
        .send()
        .await
        .unwrap();
    assert_problem(res, 431, "oversized headers").await;

    // A body that stops coming: cut off at request_timeout (1 s) with 408 or a close.
    // (Over plain TCP: the test clusters' public listener is plain HTTP.)
    assert!(g.shop.api.starts_with("http://"), "{}", g.shop.api);
    let addr = g
        .shop
        .api
        .trim_start_matches("http://")
        .trim_end_matches("/api/v1")
        .to_string();
    let answer = tokio::task::spawn_blocking({
        let key = g.admin.key.clone();
        move || slow_body(&addr, &key)
    })
    .await
    .unwrap();
    let (elapsed, text) = answer;
    assert!(
        elapsed >= Duration::from_millis(900) && elapsed < Duration::from_secs(3),
        "cut off after {elapsed:?}: {text}"
    );
    if !text.is_empty() {
        assert!(text.starts_with("HTTP/1.1 408"), "{text}");
        assert!(
            text.to_ascii_lowercase().contains("connection: close"),
            "{text}"
        );
        assert!(text.contains("application/problem+json"), "{text}");
    }
    g.assert_no_secret_logged();
}

/// Sends the head and the first bytes of a 100-byte body, then nothing; returns how
/// long until the server answered (or closed, if it sent nothing) and what it sent up
/// to the close.
fn slow_body(addr: &str, key: &str) -> (Duration, String) {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(8)))
        .unwrap();
    let head = format!(
        "POST /api/v1/products HTTP/1.1\r\nHost: {addr}\r\nX-Api-Key: {key}\r\n\
         Content-Type: application/json\r\nContent-Length: 100\r\n\r\n{{\"sku\":"
    );
    stream.write_all(head.as_bytes()).unwrap();
    let started = Instant::now();
    let mut first = None;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        match stream.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => {
                first.get_or_insert_with(|| started.elapsed());
                got.extend_from_slice(&chunk[..n]);
            }
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(e) => panic!("no answer nor close within 8 s: {e}"),
        }
    }
    let elapsed = first.unwrap_or_else(|| started.elapsed());
    (elapsed, String::from_utf8_lossy(&got).into_owned())
}
