//! Metrics and trace propagation, seen from outside the processes.

use std::time::Duration;

use crate::harness::*;
use serde_json::Value;

/// The value of the first sample line of `family` whose labels include all of `labels`.
fn sample(metrics: &str, family: &str, labels: &[&str]) -> Option<f64> {
    metrics
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter(|l| l.starts_with(&format!("{family}{{")))
        .find(|l| labels.iter().all(|label| l.contains(label)))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

async fn metrics_text(url: &str) -> String {
    let res = http().get(format!("{url}/metrics")).send().await.unwrap();
    assert_eq!(res.status(), 200);
    let ct = res.headers()["content-type"].to_str().unwrap().to_string();
    assert!(ct.starts_with("text/plain"), "content-type {ct}");
    res.text().await.unwrap()
}

#[tokio::test]
async fn metrics_count_requests_by_route_pattern() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let inventory = sandbox.start("inventory", "inv-1", &registry.url);
    for _ in 0..3 {
        get_json(&format!("{}/v1/catalog", registry.url)).await;
    }
    let client = http();
    for sku in ["sku-a", "sku-b"] {
        let res = client
            .get(format!("{}/v1/products/{sku}", inventory.url))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 404);
    }

    let text = metrics_text(&registry.url).await;
    let catalog_reads = sample(
        &text,
        "http_server_requests_total",
        &[
            r#"route="/v1/catalog""#,
            r#"method="GET""#,
            r#"status="200""#,
        ],
    );
    assert!(
        catalog_reads.is_some_and(|n| n >= 3.0),
        "expected >= 3 catalog reads, got {catalog_reads:?}:\n{text}"
    );
    // The instance's registration shows under its route pattern too.
    assert!(
        sample(
            &text,
            "http_server_requests_total",
            &[r#"route="/v1/instances""#, r#"method="POST""#]
        )
        .is_some(),
        "{text}"
    );
    let buckets = sample(
        &text,
        "http_server_request_duration_seconds_bucket",
        &[r#"route="/v1/catalog""#, r#"le="+Inf""#],
    );
    assert!(buckets.is_some_and(|n| n >= 3.0), "{buckets:?}:\n{text}");
    assert!(
        text.contains("http_server_request_duration_seconds_count"),
        "{text}"
    );
    assert!(
        text.contains("http_server_request_duration_seconds_sum"),
        "{text}"
    );

    // Routes are patterns, never raw paths (which would explode the label count).
    let text = metrics_text(&inventory.url).await;
    let by_sku = sample(
        &text,
        "http_server_requests_total",
        &[r#"route="/v1/products/{sku}""#, r#"status="404""#],
    );
    assert_eq!(by_sku, Some(2.0), "{text}");
    assert!(!text.contains("sku-a"), "raw path in metrics:\n{text}");
    assert!(
        text.contains(r#"svc_build_info{instance_id="inv-1""#),
        "{text}"
    );
    // Prometheus sets `instance` on every target it scrapes: no metric of ours may
    // carry a label of that name (it would be renamed `exported_instance`).
    let clashing: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("{instance=\"") || l.contains(",instance=\""))
        .collect();
    assert!(clashing.is_empty(), "label `instance` on: {clashing:?}");
    assert!(text.contains("process_cpu_seconds_total"), "{text}");
    assert!(text.contains("process_open_fds"), "{text}");
}

#[tokio::test]
async fn trace_context_follows_a_request_through_the_gateway() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let mut cmd = sandbox.run_command("inventory", "inv-1", &registry.url);
    // Successful requests are logged at debug; ask for them, as JSON lines.
    cmd.args(["--log-format", "json"])
        .env("RUST_LOG", "info,svc=debug");
    let inventory = sandbox.start_cmd(cmd, "inventory", "inv-1");
    let gateway = sandbox.start("gateway", "gw-1", &registry.url);
    wait_peers(&gateway, &[&inventory]).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let parent_span = "00f067aa0ba902b7";
    let res = http()
        .post(format!("{}/api/v1/products", gateway.url))
        .header("traceparent", format!("00-{trace_id}-{parent_span}-01"))
        // Vendors' entries (W3C tracestate): passed on to the callee unchanged.
        .header("tracestate", "congo=t61rcWkgMzE, rojo=00f067aa0ba902b7")
        .json(&product("traced-1"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    let request_id = res
        .headers()
        .get("x-request-id")
        .map(|v| v.to_str().unwrap().to_string());
    assert_eq!(request_id.as_deref(), Some(trace_id));

    // Inventory logged the request under the same trace id, in a child span.
    let (line, _) = wait_for(
        "inventory to log the traced request",
        Duration::from_secs(5),
        || async {
            inventory
                .stderr()
                .lines()
                .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                .find(|v| v["trace_id"] == trace_id && v["path"] == "/v1/products")
                .ok_or_else(|| "not yet".to_string())
        },
    )
    .await;
    assert_eq!(line["role"], "inventory", "{line}");
    assert_eq!(line["status"], 201, "{line}");
    let span = line["span_id"].as_str().unwrap_or_default();
    assert_eq!(span.len(), 16, "{line}");
    assert_ne!(
        span, parent_span,
        "inventory should run in a child span: {line}"
    );
    assert_eq!(line["request_id"], trace_id, "{line}");
    assert_eq!(
        line["tracestate"], "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7",
        "the client's tracestate reached inventory: {line}"
    );

    // Without a traceparent the gateway starts a new trace and still returns its id.
    let res = post_json(
        &format!("{}/api/v1/products", gateway.url),
        &product("untraced-1"),
    )
    .await;
    assert_eq!(res.status(), 201);
    let fresh = res.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_eq!(fresh.len(), 32, "{fresh}");
    assert!(fresh.bytes().all(|b| b.is_ascii_hexdigit()), "{fresh}");
    assert_ne!(fresh, trace_id);
    let fresh_in_inventory = fresh.clone();
    wait_for(
        "inventory to log the new trace",
        Duration::from_secs(5),
        || async {
            if inventory.stderr().contains(&fresh_in_inventory) {
                Ok(())
            } else {
                Err("not yet".to_string())
            }
        },
    )
    .await;
}
