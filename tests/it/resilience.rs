//! The service client under faults, seen from the outside: real processes, real sockets.
//!
//! Each test runs a registry, one or two instances of the called role, and a gateway
//! whose `client` section is tuned so the policy under test acts within a few seconds,
//! then breaks a dependency (SIGSTOP, SIGKILL, or the `SVC_FAULT_HTTP_500` test hook)
//! and checks what callers get and what the gateway's `/metrics` and log say:
//!
//! - a stalled shard costs callers at most the timeout, is ejected, and is probed back
//!   in after SIGCONT;
//! - a dependency answering 500 is retried only within the retry budget, is ejected,
//!   and is closed again once it answers properly;
//! - beyond `max_concurrency`, calls fail at once with 503 and `Retry-After`;
//! - a create sent to a dead orders instance is retried on the other one (never sent,
//!   so safe) and the dead one is ejected at once.
//!
//! The registries here grant long leases (30 s), so a stalled or killed instance stays
//! in every view for the whole test: what protects callers is the client, not discovery.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::harness::*;
use nix::sys::signal::Signal;
use serde_json::Value;

/// Lease of the registries in these tests: longer than any test.
const LONG_LEASE: &str = "registry:\n  lease_ttl: 30s\n  renew_interval: 1s\n";

/// A registry with [`LONG_LEASE`].
fn long_lease_registry(sandbox: &Sandbox) -> Svc {
    let config = sandbox.write_file("registry-long.yaml", LONG_LEASE);
    let mut cmd = svc_command();
    cmd.arg("run")
        .args(["--role", "registry", "--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(sandbox.data_dir())
        .args(["--instance-id", "reg-0"])
        .arg("--config")
        .arg(config);
    Svc::spawn(cmd, "registry/reg-0").unwrap_or_else(|e| panic!("{e}"))
}

/// `svc run` of `role` as instance `id` on `port` (0: any) with `config` and more args.
fn role_command(
    sandbox: &Sandbox,
    registry: &Svc,
    role: &str,
    id: &str,
    port: u16,
    config: &Path,
    args: &[&str],
) -> Command {
    let mut cmd = svc_command();
    cmd.arg("run")
        .args(["--role", role])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(sandbox.data_dir())
        .args(["--instance-id", id])
        .args(["--registry", &registry.url])
        .arg("--config")
        .arg(config)
        .args(args);
    cmd
}

/// The sum of the samples of metric `name` whose labels include every pair of `labels`.
fn metric(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric_name, rest) = match series.split_once('{') {
                Some((n, rest)) => (n, rest),
                None => (series, ""),
            };
            if metric_name != name {
                return None;
            }
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            all.then(|| value.parse::<f64>().ok()).flatten()
        })
        .sum()
}

async fn metrics_of(svc: &Svc) -> String {
    let url = format!("{}/metrics", svc.internal_url);
    http()
        .get(&url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
        .text()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"))
}

/// Waits until the gateway's metric `name{labels}` equals `want`; returns how long it took.
async fn wait_metric(svc: &Svc, name: &str, labels: &[(&str, &str)], want: f64) -> Duration {
    let what = format!("{name}{labels:?} == {want} on {}", svc.label);
    wait_for(&what, Duration::from_secs(10), || async {
        let value = metric(&metrics_of(svc).await, name, labels);
        if value == want {
            Ok(())
        } else {
            Err(format!("{value}"))
        }
    })
    .await
    .1
}

/// GET `url`: status, `Retry-After`, body as JSON (Null if not JSON), and the time taken.
async fn timed_get(client: &reqwest::Client, url: &str) -> (u16, Option<String>, Value, Duration) {
    let started = Instant::now();
    let res = client
        .get(url)
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {url}: {e}"));
    let status = res.status().as_u16();
    let retry_after = header(&res, "retry-after");
    let text = res.text().await.unwrap_or_default();
    let took = started.elapsed();
    (
        status,
        retry_after,
        serde_json::from_str(&text).unwrap_or(Value::Null),
        took,
    )
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

#[tokio::test]
async fn a_stalled_shard_is_ejected_within_the_timeout_and_probed_back_in() {
    let sandbox = Sandbox::new();
    let registry = long_lease_registry(&sandbox);
    let config = sandbox.write_file(
        "client.yaml",
        "client:\n  dependencies:\n    inventory:\n      timeout: 1s\n      attempt_timeout: 300ms\n      eject_after_failures: 3\n      eject_base: 500ms\n      eject_max: 1s\n",
    );
    let shards = ["--shards", "inventory=2"];
    let spawn = |role: &str, id: &str, extra: &[&str]| {
        let args: Vec<&str> = shards.iter().chain(extra).copied().collect();
        let cmd = role_command(&sandbox, &registry, role, id, 0, &config, &args);
        sandbox.start_cmd(cmd, role, id)
    };
    let inv0 = spawn("inventory", "inv-0", &["--shard", "0"]);
    let inv1 = spawn("inventory", "inv-1", &["--shard", "1"]);
    let gateway = spawn("gateway", "gw-1", &[]);
    wait_peers(&gateway, &[&inv0, &inv1]).await;
    let client = http();
    let api = format!("{}/api/v1", gateway.url);
    for shard in [0, 1] {
        let sku = &keys_on_shard("tea", shard, 2, 1)[0];
        let res = post_json(&format!("{api}/products"), &product(sku)).await;
        assert_eq!(res.status(), 201, "{sku}: {:?}", res.text().await);
    }
    let products = format!("{api}/products");
    let (status, _, body, _) = timed_get(&client, &products).await;
    assert_eq!(
        (status, body["partial"].as_bool()),
        (200, Some(false)),
        "{body}"
    );

    inv1.freeze();
    let stopped = Instant::now();
    // A burst of listings: each keeps answering (shard 0's products, shard 1 named as
    // missing), none waits longer than the timeout, and inv-1 gets ejected.
    let mut took = Vec::new();
    for i in 0..30 {
        let (status, _, body, t) = timed_get(&client, &products).await;
        assert_eq!(status, 200, "call {i}: {body}");
        assert_eq!(body["products"].as_array().map(Vec::len), Some(1), "{body}");
        assert_eq!(body["missing_shards"], serde_json::json!([1]), "{body}");
        took.push(t);
    }
    let burst = stopped.elapsed();
    let labels = [("dependency", "inventory"), ("instance_id", "inv-1")];
    let text = metrics_of(&gateway).await;
    assert!(
        metric(
            &text,
            "svc_client_ejections_total",
            &[("dependency", "inventory")]
        ) >= 1.0,
        "no ejection:\n{text}"
    );
    gateway.wait_for_log("circuit opened", Duration::from_secs(1));
    let slow = took
        .iter()
        .filter(|t| **t > Duration::from_millis(250))
        .count();
    took.sort();
    let (p50, p99, max) = (
        percentile(&took, 0.5),
        percentile(&took, 0.99),
        took[took.len() - 1],
    );
    eprintln!(
        "stalled shard: burst of {} in {burst:?}; p50 {p50:?}, p99 {p99:?}, max {max:?}; {slow} slow calls",
        took.len()
    );
    assert!(
        max < Duration::from_millis(1500),
        "a call outlived the 1 s timeout: {max:?}"
    );
    // Ejected, inv-1 costs nothing: only the calls until it was ejected (and a probe
    // now and then) were slow.
    assert!(slow <= 5, "{slow} slow calls: {took:?}");
    assert!(p50 < Duration::from_millis(250), "p50 {p50:?}");

    // Back from SIGSTOP: a probe finds it answering and it is back in the listings.
    inv1.signal(Signal::SIGCONT);
    let resumed = Instant::now();
    wait_for(
        "complete listings again",
        Duration::from_secs(8),
        || async {
            let (status, _, body, _) = timed_get(&client, &products).await;
            match (status, body["partial"].as_bool()) {
                (200, Some(false)) => Ok(()),
                _ => Err(format!("{status}: {body}")),
            }
        },
    )
    .await;
    let back_in = resumed.elapsed();
    wait_metric(&gateway, "svc_client_breaker_state", &labels, 0.0).await;
    gateway.wait_for_log("circuit closed", Duration::from_secs(1));
    eprintln!("stalled shard: back in {back_in:?} after SIGCONT");
    drop((inv0, inv1, gateway));
}

#[tokio::test]
async fn retries_of_a_failing_dependency_stay_within_the_retry_budget() {
    let sandbox = Sandbox::new();
    let registry = long_lease_registry(&sandbox);
    // The breaker is kept out of the way (it would stop the calls first): what limits
    // the retries here is the budget alone, 20 % of the calls plus 0.5/s over 10 s.
    let config = sandbox.write_file(
        "client.yaml",
        "client:\n  dependencies:\n    inventory:\n      max_attempts: 3\n      retry_budget_ratio: 0.2\n      retry_budget_floor_per_s: 0.5\n      backoff_base: 1ms\n      backoff_max: 2ms\n      eject_after_failures: 1000\n",
    );
    let mut cmd = role_command(&sandbox, &registry, "inventory", "inv-0", 0, &config, &[]);
    cmd.env(FAULT_HTTP_500, "1");
    let inventory = sandbox.start_cmd(cmd, "inventory", "inv-0");
    inventory.wait_for_log("fault injection", Duration::from_secs(1));
    let cmd = role_command(&sandbox, &registry, "gateway", "gw-1", 0, &config, &[]);
    let gateway = sandbox.start_cmd(cmd, "gateway", "gw-1");
    wait_peers(&gateway, &[&inventory]).await;

    let client = http();
    let calls = 50;
    for i in 0..calls {
        let url = format!("{}/api/v1/products/tea-{i}", gateway.url);
        let (status, retry_after, body, _) = timed_get(&client, &url).await;
        // The owner's 500 is relayed once the retries allowed are spent.
        assert_eq!(status, 500, "{body}");
        assert_eq!(retry_after, None);
    }
    let text = metrics_of(&gateway).await;
    let dep = [("dependency", "inventory")];
    let made = metric(&text, "svc_client_requests_total", &dep);
    let retries = metric(&text, "svc_client_retries_total", &dep);
    let skipped = metric(
        &text,
        "svc_client_retries_skipped_total",
        &[("dependency", "inventory"), ("reason", "budget")],
    );
    let served = metric(
        &metrics_of(&inventory).await,
        "http_server_requests_total",
        &[("status", "500")],
    );
    eprintln!(
        "failing dependency: {made} calls, {retries} retries, {skipped} refused by the budget, {served} requests reached it"
    );
    assert_eq!(made, calls as f64);
    let budget = 0.2 * calls as f64 + 0.5 * 10.0;
    assert!(retries <= budget, "{retries} retries > budget {budget}");
    assert!(retries >= 5.0, "the floor allows some retries: {retries}");
    // Without the budget every call would have been sent 3 times; here every call
    // asked for at least one retry and most were refused.
    assert!(skipped >= calls as f64 - retries, "{skipped} refused");
    assert_eq!(served, made + retries, "every retry reached the instance");
}

#[tokio::test]
async fn a_failing_instance_is_ejected_and_closed_again_once_it_answers() {
    let sandbox = Sandbox::new();
    let registry = long_lease_registry(&sandbox);
    let config = sandbox.write_file(
        "client.yaml",
        "client:\n  dependencies:\n    inventory:\n      eject_after_failures: 3\n      eject_base: 2s\n      eject_max: 4s\n      backoff_base: 1ms\n      backoff_max: 2ms\n",
    );
    // Ejected for 2 s: long enough that the second call below finds the breaker still
    // open on a loaded machine (at 300 ms it was sometimes half-open already).
    let mut cmd = role_command(&sandbox, &registry, "inventory", "inv-0", 0, &config, &[]);
    cmd.env(FAULT_HTTP_500, "1");
    let mut inventory = sandbox.start_cmd(cmd, "inventory", "inv-0");
    let port = inventory.port();
    let cmd = role_command(&sandbox, &registry, "gateway", "gw-1", 0, &config, &[]);
    let gateway = sandbox.start_cmd(cmd, "gateway", "gw-1");
    wait_peers(&gateway, &[&inventory]).await;
    let client = http();
    let url = format!("{}/api/v1/products/tea", gateway.url);
    let labels = [("dependency", "inventory"), ("instance_id", "inv-0")];

    // The first call's three attempts all get 500: the breaker opens.
    let (status, _, body, _) = timed_get(&client, &url).await;
    assert_eq!(status, 500, "{body}");
    wait_metric(&gateway, "svc_client_breaker_state", &labels, 1.0).await;
    gateway.wait_for_log("circuit opened", Duration::from_secs(1));
    // Ejected: callers get a quick 503 with Retry-After instead of the instance's 500s.
    let (status, retry_after, body, took) = timed_get(&client, &url).await;
    assert_eq!(status, 503, "{body}");
    assert!(retry_after.is_some(), "503 without Retry-After: {body}");
    assert!(
        body["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("ejected"),
        "{body}"
    );
    assert!(took < Duration::from_millis(250), "{took:?}");

    // The fault is removed: the same instance, same address, without the hook.
    inventory.kill();
    let cmd = role_command(
        &sandbox,
        &registry,
        "inventory",
        "inv-0",
        port,
        &config,
        &[],
    );
    let inventory = sandbox.start_cmd(cmd, "inventory", "inv-0");
    let fixed = Instant::now();
    wait_for("the instance back in", Duration::from_secs(12), || async {
        match timed_get(&client, &url).await {
            // Not found: inventory itself answered (there is no such product).
            (404, _, _, _) => Ok(()),
            (status, _, body, _) => Err(format!("{status}: {body}")),
        }
    })
    .await;
    let back = fixed.elapsed();
    wait_metric(&gateway, "svc_client_breaker_state", &labels, 0.0).await;
    gateway.wait_for_log("circuit closed", Duration::from_secs(1));
    let text = metrics_of(&gateway).await;
    let ejections = metric(&text, "svc_client_ejections_total", &[labels[0]]);
    eprintln!("failing instance: back in {back:?} after the restart; {ejections} ejections");
    assert!(ejections >= 1.0);
    drop(inventory);
}

#[tokio::test]
async fn beyond_max_concurrency_the_gateway_answers_503_at_once() {
    let sandbox = Sandbox::new();
    let registry = long_lease_registry(&sandbox);
    let config = sandbox.write_file(
        "client.yaml",
        "client:\n  dependencies:\n    inventory:\n      max_concurrency: 1\n      timeout: 3s\n",
    );
    let cmd = role_command(&sandbox, &registry, "inventory", "inv-0", 0, &config, &[]);
    let inventory = sandbox.start_cmd(cmd, "inventory", "inv-0");
    let cmd = role_command(&sandbox, &registry, "gateway", "gw-1", 0, &config, &[]);
    let gateway = sandbox.start_cmd(cmd, "gateway", "gw-1");
    wait_peers(&gateway, &[&inventory]).await;

    // One call holds the only permit: inventory is frozen and does not answer it.
    inventory.freeze();
    let held_url = format!("{}/api/v1/products/tea", gateway.url);
    let held = tokio::spawn(async move { timed_get(&http(), &held_url).await });
    let dep = [("dependency", "inventory")];
    wait_metric(&gateway, "svc_client_in_flight", &dep, 1.0).await;

    let url = format!("{}/api/v1/products/cake", gateway.url);
    let started = Instant::now();
    let res = http().get(&url).send().await.expect("GET");
    let took = started.elapsed();
    let retry_after = header(&res, "retry-after");
    let problem = assert_problem(res, 503, "beyond the limit").await;
    assert_eq!(retry_after.as_deref(), Some("1"), "{problem}");
    assert!(
        problem["detail"]
            .as_str()
            .unwrap_or_default()
            .contains("too many calls in flight"),
        "{problem}"
    );
    assert!(took < Duration::from_millis(500), "not fast: {took:?}");
    let text = metrics_of(&gateway).await;
    let overloaded = [("dependency", "inventory"), ("outcome", "overloaded")];
    assert_eq!(metric(&text, "svc_client_requests_total", &overloaded), 1.0);
    eprintln!("concurrency limit: 503 in {took:?} while the permit was held");

    // Inventory runs again: the held call is answered and the permit comes back.
    inventory.signal(Signal::SIGCONT);
    let (status, _, body, took) = held.await.expect("held call");
    assert_eq!(status, 404, "the held call reaches inventory: {body}");
    assert!(took < Duration::from_secs(4), "{took:?}");
    wait_metric(&gateway, "svc_client_in_flight", &dep, 0.0).await;
    let (status, _, _, _) = timed_get(&http(), &url).await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn a_create_sent_to_a_dead_instance_is_retried_on_another_and_it_is_ejected() {
    let sandbox = Sandbox::new();
    let registry = long_lease_registry(&sandbox);
    let config: PathBuf = sandbox.write_file(
        "client.yaml",
        "orders:\n  create_wait: 100ms\n  step_retry_max: 500ms\nclient:\n  dependencies:\n    orders: { eject_base: 10s, eject_max: 10s }\n",
    );
    let spawn = |role: &str, id: &str, extra: &[&str]| {
        let cmd = role_command(&sandbox, &registry, role, id, 0, &config, extra);
        sandbox.start_cmd(cmd, role, id)
    };
    let inventory = spawn("inventory", "inv-0", &[]);
    let payments = spawn("payments", "pay-0", &[]);
    let notifications = spawn("notifications", "ntf-0", &[]);
    let two = ["--shards", "orders=2"];
    let ord0 = spawn("orders", "ord-0", &[two[0], two[1], "--shard", "0"]);
    let mut ord1 = spawn("orders", "ord-1", &[two[0], two[1], "--shard", "1"]);
    let gateway = spawn("gateway", "gw-1", &two);
    wait_peers(
        &gateway,
        &[&inventory, &ord0, &ord1, &payments, &notifications],
    )
    .await;
    let api = format!("{}/api/v1", gateway.url);
    let res = post_json(&format!("{api}/products"), &product("tea")).await;
    assert_eq!(res.status(), 201);

    // Dead, but still in every view (long lease): connections to it are refused.
    ord1.kill();
    let client = http();
    let mut ids = Vec::new();
    for i in 0..10 {
        let res = client
            .post(format!("{api}/orders"))
            .json(&order_body(&[("tea", 1)], None))
            .send()
            .await
            .expect("POST orders");
        let status = res.status().as_u16();
        let body: Value = res.json().await.unwrap_or(Value::Null);
        assert!(matches!(status, 201 | 202), "order {i}: {status}: {body}");
        let id = body["id"].as_str().unwrap_or_default().to_string();
        assert_eq!(shard_of_order(&id), 0, "{id}");
        ids.push(id);
    }
    let text = metrics_of(&gateway).await;
    let dep = [("dependency", "orders")];
    let refused = metric(
        &text,
        "svc_client_attempt_errors_total",
        &[("dependency", "orders"), ("kind", "refused")],
    );
    let retries = metric(&text, "svc_client_retries_total", &dep);
    eprintln!("dead orders shard: {refused} refused attempts, {retries} retries, all 10 created");
    assert_eq!(refused, 1.0, "ejected at the first refusal:\n{text}");
    assert!(retries >= 1.0);
    assert_eq!(
        metric(
            &text,
            "svc_client_breaker_state",
            &[("dependency", "orders"), ("instance_id", "ord-1")]
        ),
        1.0
    );
    gateway.wait_for_log("connection refused", Duration::from_secs(1));
    // Each create ran once: ten orders, all on the live shard.
    let listed = get_json(&format!("{}/v1/orders?limit=100", ord0.url)).await;
    assert_eq!(
        listed["orders"].as_array().map(Vec::len),
        Some(ids.len()),
        "{listed}"
    );
}

#[tokio::test]
async fn a_callers_deadline_bounds_the_callee_and_its_own_calls() {
    let sandbox = Sandbox::new();
    let registry = long_lease_registry(&sandbox);
    let config = sandbox.write_file(
        "orders.yaml",
        "orders:\n  create_wait: 5s\n  step_retry_max: 500ms\n",
    );
    let spawn = |role: &str, id: &str, env: &[(&str, &str)]| {
        let mut cmd = role_command(&sandbox, &registry, role, id, 0, &config, &[]);
        for (k, v) in env {
            cmd.env(k, v);
        }
        sandbox.start_cmd(cmd, role, id)
    };
    let inventory = spawn("inventory", "inv-0", &[]);
    let payments = spawn("payments", "pay-0", &[]);
    let orders = spawn("orders", "ord-0", &[(FAULT_SAGA_STEP_DELAY, "1s")]);
    wait_peers(&orders, &[&inventory, &payments]).await;
    let res = post_json_as(
        "gateway",
        &format!("{}/v1/products", inventory.url),
        &product("tea"),
    )
    .await;
    assert_eq!(res.status(), 201);
    // A product no order has named yet, so orders must ask inventory about it (it
    // remembers the products it was told exist).
    let res = post_json_as(
        "gateway",
        &format!("{}/v1/products", inventory.url),
        &product("mint"),
    )
    .await;
    assert_eq!(res.status(), 201);
    // Orders takes creates from gateways only.
    let client = client_as("gateway");
    let create = |deadline_ms: &'static str, sku: &'static str| {
        client
            .post(format!("{}/v1/orders", orders.url))
            .header("x-svc-deadline-ms", deadline_ms)
            .json(&order_body(&[(sku, 1)], None))
            .send()
    };

    // The saga is slow (1 s per step) and create_wait is 5 s, but the caller will only
    // wait 400 ms: the create answers 202 (pending) before that, not a timeout. The
    // status is the proof: past the deadline the server answers 504 itself. The time
    // the client sees also holds a TLS handshake, so it is bounded only well below what
    // waiting for the saga or for create_wait would take (4 s, 5 s).
    let started = Instant::now();
    let res = create("400", "tea").await.expect("POST");
    let took = started.elapsed();
    assert_eq!(res.status(), 202, "{:?}", res.text().await);
    assert!(took < Duration::from_secs(2), "{took:?}");

    // An expired deadline is refused at once.
    let res = client
        .get(format!("{}/v1/products", inventory.url))
        .header("x-svc-deadline-ms", "0")
        .send()
        .await
        .expect("GET");
    assert_problem(res, 504, "expired deadline").await;

    // Inventory is frozen: the create's product check (a call of its own) gets what is
    // left of the caller's 300 ms, not its 5 s timeout, and the caller has its answer
    // in time instead of work going on for nobody.
    inventory.freeze();
    let started = Instant::now();
    let res = create("300", "mint").await.expect("POST");
    let took = started.elapsed();
    let status = res.status().as_u16();
    assert!(
        matches!(status, 503 | 504),
        "{status}: {:?}",
        res.text().await
    );
    // Far below the product check's own 5 s timeout, whatever the machine's load.
    assert!(took < Duration::from_millis(2500), "{took:?}");
    inventory.signal(Signal::SIGCONT);
    eprintln!("deadline: a 300 ms caller had its {status} after {took:?} with inventory frozen");
}
