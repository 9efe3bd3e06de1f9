//! What mutual TLS costs a service hop, and whether connections are reused under load.
//!
//! Two small clusters run side by side — registry, inventory and gateway — one with
//! mutual TLS (the default) and one with `tls.insecure`. The same request (a product
//! read through the gateway, so one gateway → inventory hop) goes to each in
//! interleaved rounds, so machine drift hits both alike; the client → gateway leg is
//! plain HTTP with keep-alive in both. Afterwards each instance's
//! `svc_server_connections_total` (with TLS: completed handshakes) is compared with the
//! requests it served.
//!
//! Ignored by `cargo test`; run it in release:
//!
//!     cargo test --release --test mtls_cost -- --ignored --nocapture

use std::time::{Duration, Instant};

use crate::harness::*;

const ROUNDS: usize = 20;
const PER_ROUND: usize = 250;

struct Side {
    label: &'static str,
    _cluster: Sandbox,
    _registry: Svc,
    inventory: Svc,
    gateway: Svc,
    samples: Vec<Duration>,
}

fn side(label: &'static str, insecure: bool) -> Side {
    let sandbox = Sandbox::new();
    let mut registry_cmd = svc_command();
    registry_cmd
        .arg("run")
        .args([
            "--role",
            "registry",
            "--listen",
            "127.0.0.1:0",
            "--instance-id",
            "reg-0",
        ])
        .arg("--data-dir")
        .arg(sandbox.data_dir());
    let config = sandbox.write_file(
        "tls.yaml",
        "tls:\n  insecure: true\nregistries: [\"http://127.0.0.1:7700\"]\n",
    );
    if insecure {
        registry_cmd.arg("--config").arg(&config);
    }
    let registry = Svc::spawn(registry_cmd, "registry").unwrap();
    let start = |role: &str, id: &str| {
        let mut cmd = sandbox.run_command(role, id, &registry.url);
        if insecure {
            cmd.arg("--config").arg(&config);
        }
        sandbox.start_cmd(cmd, role, id)
    };
    let inventory = start("inventory", "inv-0");
    let gateway = start("gateway", "gw-0");
    Side {
        label,
        _cluster: sandbox,
        _registry: registry,
        inventory,
        gateway,
        samples: Vec::new(),
    }
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() as f64 - 1.0) * p).round() as usize]
}

/// The value of the first series of `family` in `url`'s /metrics whose line contains
/// every one of `labels`.
async fn metric(url: &str, family: &str, labels: &[&str]) -> f64 {
    let text = http()
        .get(format!("{url}/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    text.lines()
        .filter(|l| l.starts_with(family))
        .filter(|l| labels.iter().all(|label| l.contains(label)))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run with --release --ignored --nocapture"]
async fn cost_of_mutual_tls_on_a_service_hop() {
    let mut sides = [side("mutual TLS", false), side("plain HTTP", true)];
    // A keep-alive client for the public leg, the same for both sides.
    let public = plain_client_builder()
        .default_headers(
            [(
                reqwest::header::AUTHORIZATION,
                format!("Bearer {TEST_API_KEY}").parse().unwrap(),
            )]
            .into_iter()
            .collect(),
        )
        .build()
        .unwrap();
    for s in &sides {
        wait_peers(&s.gateway, &[&s.inventory]).await;
        let res = public
            .post(format!("{}/api/v1/products", s.gateway.url))
            .json(&product("tea"))
            .send()
            .await
            .unwrap();
        assert_eq!(res.status(), 201);
    }
    for round in 0..=ROUNDS {
        for s in sides.iter_mut() {
            let url = format!("{}/api/v1/products/tea", s.gateway.url);
            for _ in 0..PER_ROUND {
                let started = Instant::now();
                let res = public.get(&url).send().await.unwrap();
                assert_eq!(res.status(), 200);
                res.bytes().await.unwrap();
                // Round 0 warms both up (connections, caches) and is not counted.
                if round > 0 {
                    s.samples.push(started.elapsed());
                }
            }
        }
    }
    println!(
        "\nGET /api/v1/products/tea through the gateway, {} requests per side, sequential:",
        ROUNDS * PER_ROUND
    );
    println!(
        "{:<12} {:>9} {:>9} {:>9}  inventory: requests  connections (handshakes)",
        "", "p50", "p90", "p99"
    );
    for s in sides.iter_mut() {
        s.samples.sort();
        let served = metric(
            &s.inventory.internal_url,
            "http_server_requests_total",
            &["route=\"/v1/products/{sku}\""],
        )
        .await;
        let connections = metric(
            &s.inventory.internal_url,
            "svc_server_connections_total",
            &["listener=\"internal\""],
        )
        .await;
        println!(
            "{:<12} {:>9.1?} {:>9.1?} {:>9.1?}  {served:>20} {connections:>12}",
            s.label,
            percentile(&s.samples, 0.50),
            percentile(&s.samples, 0.90),
            percentile(&s.samples, 0.99),
        );
    }
}
