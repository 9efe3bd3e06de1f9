//! `svc bench`: a load generator that places orders through a running gateway.
//!
//! It creates its own products with ample stock (so it measures the full saga, not
//! refusals), several of them so that orders spread over every inventory shard (a SKU
//! lives on the shard it hashes to), keeps `--concurrency` orders in flight for
//! `--duration`, and prints confirmed orders per second and latency percentiles. Anyone can run it against
//! `svc dev` to reproduce the figures in docs/ARCHITECTURE.md.

use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use super::{fail, EXIT_FAILURE, EXIT_USAGE};
use crate::cli::BenchArgs;

/// Products the orders cycle through: enough that every shard of a few gets some.
const PRODUCTS: usize = 16;

#[derive(Default)]
struct Tally {
    latencies: Vec<Duration>,
    confirmed: u64,
    cancelled: u64,
    pending: u64,
    errors: u64,
}

pub fn run(args: BenchArgs) -> ExitCode {
    if args.concurrency == 0 || args.concurrency > 10_000 {
        return fail(EXIT_USAGE, "--concurrency: expected 1 to 10000");
    }
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => return fail(EXIT_FAILURE, e),
    };
    match runtime.block_on(bench(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_FAILURE, format!("{e:#}")),
    }
}

async fn bench(args: BenchArgs) -> anyhow::Result<()> {
    let key = match &args.api_key {
        Some(key) => key.clone(),
        None => std::fs::read_to_string(&args.api_key_file)
            .map(|k| k.trim().to_string())
            .map_err(|e| {
                anyhow::anyhow!(
                    "no --api-key, and {} cannot be read: {e}",
                    args.api_key_file.display()
                )
            })?,
    };
    let mut headers = reqwest::header::HeaderMap::new();
    let mut bearer = reqwest::header::HeaderValue::from_str(&format!("Bearer {key}"))
        .map_err(|_| anyhow::anyhow!("the API key is not a valid header value"))?;
    bearer.set_sensitive(true);
    headers.insert(reqwest::header::AUTHORIZATION, bearer);
    let http = reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?;
    let base = args.gateway.trim_end_matches('/').to_string();
    let run = ulid::Ulid::new().to_string().to_lowercase();
    let skus: Vec<String> = (0..PRODUCTS).map(|i| format!("bench-{run}-{i}")).collect();
    for sku in &skus {
        let created = http
            .post(format!("{base}/api/v1/products"))
            .json(&serde_json::json!({"sku": sku, "name": "Benchmark item", "price_minor": 100, "stock": 1_000_000_000u64}))
            .send()
            .await
            .map_err(|e| anyhow::anyhow!("gateway {base} cannot be reached (is `svc dev` running?): {e}"))?;
        if !created.status().is_success() {
            anyhow::bail!(
                "could not create the benchmark product {sku}: {}",
                created.text().await.unwrap_or_default()
            );
        }
    }
    println!(
        "placing orders through {base} for {} at concurrency {}",
        humantime::format_duration(args.duration),
        args.concurrency
    );
    let tally = Arc::new(Mutex::new(Tally::default()));
    let started = Instant::now();
    let deadline = started + args.duration;
    let workers = (0..args.concurrency).map(|worker| {
        let (http, base, skus, tally) = (http.clone(), base.clone(), skus.clone(), tally.clone());
        tokio::spawn(async move {
            let mut next = worker;
            while Instant::now() < deadline {
                let sku = &skus[next % skus.len()];
                next += 1;
                let t0 = Instant::now();
                let res = http
                    .post(format!("{base}/api/v1/orders"))
                    .json(&serde_json::json!({"lines": [{"sku": sku, "quantity": 1}]}))
                    .send()
                    .await;
                let status =
                    match res {
                        Ok(r) => r.json::<serde_json::Value>().await.ok().and_then(|v| {
                            v.get("status").and_then(|s| s.as_str()).map(str::to_string)
                        }),
                        Err(_) => None,
                    };
                let elapsed = t0.elapsed();
                let mut t = tally.lock();
                match status.as_deref() {
                    Some("confirmed") => {
                        t.confirmed += 1;
                        t.latencies.push(elapsed);
                    }
                    Some("cancelled") => t.cancelled += 1,
                    Some("pending") => t.pending += 1,
                    _ => t.errors += 1,
                }
            }
        })
    });
    for w in futures::future::join_all(workers).await {
        w?;
    }
    let wall = started.elapsed();
    let mut t = tally.lock();
    t.latencies.sort();
    let pct = |p: f64| -> String {
        if t.latencies.is_empty() {
            return "-".into();
        }
        let i = ((t.latencies.len() as f64 * p).ceil() as usize).clamp(1, t.latencies.len()) - 1;
        format!("{:.1} ms", t.latencies[i].as_secs_f64() * 1000.0)
    };
    println!(
        "confirmed {} in {:.1}s = {:.1} orders/s; cancelled {}, still pending {}, errors {}",
        t.confirmed,
        wall.as_secs_f64(),
        t.confirmed as f64 / wall.as_secs_f64(),
        t.cancelled,
        t.pending,
        t.errors
    );
    println!(
        "latency of confirmed orders: p50 {}  p99 {}  max {}",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}
