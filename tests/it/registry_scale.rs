//! What the registry costs at scale: registrations per second with 1,000 and 10,000
//! instances, and the CPU and memory of keeping 10,000 instances renewing every second.
//!
//! A real registry process (mutual TLS, the harness's test certificates) is driven by
//! many concurrent keep-alive connections. An instance registers only as the role its
//! certificate names, so the load is spread over every registering role, each with its
//! own client and certificate; every instance id is unique, and the instances of a
//! sharded role claim distinct shards (as far as there are shards), like real ones.
//! Each run of registrations starts a fresh registry. Then all 10,000 instances renew
//! once per second, spread evenly over the second, while the registry's CPU (from
//! `/proc/<pid>/stat`) and resident memory (`VmRSS` of `/proc/<pid>/status`) are read.
//! The driver runs on the same machine, so its own CPU is reported beside.
//!
//! The registry is given a 300 s lease here so that the first registrations of a slow
//! run do not expire before the renewal phase starts; the renewal interval is the
//! default 1 s, and the evictor checks leases as often as with the default TTL.
//!
//! Ignored by `cargo test`; run it in release:
//!
//!     cargo test --release --test it bench_registry -- --ignored --nocapture

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::json;
use svc_platform::tls::client_config;

use crate::harness::*;

/// Concurrent connections (and tasks) driving the registry.
const CONNECTIONS: usize = 64;
/// Renewals a driving task may have in flight at once.
const IN_FLIGHT_PER_CONNECTION: usize = 4;
/// The roles instances register as; each has its own certificate.
const ROLES: [&str; 5] = [
    "gateway",
    "orders",
    "inventory",
    "payments",
    "notifications",
];
/// Shards a role can have (`svc_platform::shards::MAX_SHARDS`).
const MAX_SHARDS: usize = 1024;
/// How long the renewal phase is measured.
const RENEW_WINDOW: Duration = Duration::from_secs(10);

/// One instance the driver registers: its role, id, and body.
struct Fake {
    role: &'static str,
    id: String,
    body: serde_json::Value,
}

fn fakes(count: usize) -> Vec<Fake> {
    (0..count)
        .map(|n| {
            let role = ROLES[n % ROLES.len()];
            let nth_of_role = n / ROLES.len();
            let id = format!("{role}-bench-{n:05}");
            // What a real instance registers: its shard and, for a gateway, its public
            // address; sharded roles claim distinct shards while there are any.
            let mut metadata = serde_json::Map::new();
            if role == "gateway" {
                metadata.insert("shard".into(), json!("0"));
                metadata.insert(
                    "public_address".into(),
                    json!(format!("http://127.0.0.1:{}", 20000 + nth_of_role)),
                );
            } else if nth_of_role < MAX_SHARDS {
                metadata.insert("shard".into(), json!(nth_of_role.to_string()));
            }
            let body = json!({
                "role": role,
                "instance_id": id,
                "address": format!("https://127.0.0.1:{}", 30000 + n % 30000),
                "version": "0.1.0",
                "metadata": metadata,
            });
            Fake { role, id, body }
        })
        .collect()
}

/// A keep-alive client presenting `role`'s certificate.
fn pooled_client(role: &str) -> reqwest::Client {
    reqwest::Client::builder()
        .use_preconfigured_tls(client_config(&material(role)))
        .pool_max_idle_per_host(CONNECTIONS)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("http client")
}

fn clients() -> Vec<reqwest::Client> {
    ROLES.iter().map(|r| pooled_client(r)).collect()
}

fn client_for<'a>(clients: &'a [reqwest::Client], role: &str) -> &'a reqwest::Client {
    &clients[ROLES.iter().position(|r| *r == role).unwrap()]
}

fn start_registry(sandbox: &Sandbox, id: &str) -> Svc {
    let config = sandbox.write_file(
        "registry-bench.yaml",
        "registry:\n  lease_ttl: 300s\n  renew_interval: 1s\n",
    );
    let mut cmd = svc_command();
    cmd.arg("run")
        .args(["--role", "registry"])
        .args(["--listen", "127.0.0.1:0"])
        .arg("--data-dir")
        .arg(sandbox.data_dir().join(id))
        .args(["--instance-id", id])
        .arg("--config")
        .arg(config);
    Svc::spawn(cmd, &format!("registry/{id}")).unwrap_or_else(|e| panic!("{e}"))
}

/// Registers every one of `fakes` over [`CONNECTIONS`] concurrent connections; returns
/// registrations per second.
async fn register_all(registry: &Svc, fakes: &Arc<Vec<Fake>>, clients: &[reqwest::Client]) -> f64 {
    let url = format!("{}/v1/instances", registry.url);
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..CONNECTIONS {
        let (fakes, next, url) = (fakes.clone(), next.clone(), url.clone());
        let clients = clients.to_vec();
        tasks.push(tokio::spawn(async move {
            loop {
                let n = next.fetch_add(1, Ordering::Relaxed) as usize;
                let Some(fake) = fakes.get(n) else { return };
                let res = client_for(&clients, fake.role)
                    .post(&url)
                    .json(&fake.body)
                    .send()
                    .await
                    .unwrap_or_else(|e| panic!("register {}: {e}", fake.id));
                let status = res.status();
                let text = res.text().await.unwrap_or_default();
                assert!(
                    status.is_success(),
                    "register {}: {status}: {text}",
                    fake.id
                );
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    fakes.len() as f64 / started.elapsed().as_secs_f64()
}

/// Clock ticks per second of `/proc/<pid>/stat`'s times.
fn clock_ticks() -> f64 {
    std::process::Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100.0)
}

/// CPU seconds (user + system) `pid` has used so far.
fn cpu_seconds(pid: i32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("stat");
    // Fields after the command name's closing parenthesis: state is field 3, utime 14.
    let fields: Vec<&str> = stat[stat.rfind(')').unwrap() + 2..].split(' ').collect();
    let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
    ticks / clock_ticks()
}

/// Resident memory of `pid` in MiB (`VmRSS`).
fn rss_mib(pid: i32) -> f64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let kib: f64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS");
    kib / 1024.0
}

/// Renews every one of `fakes` once per second for `window`, spread evenly over each
/// second; returns the renewals done.
async fn renew_all(
    registry: &Svc,
    fakes: &Arc<Vec<Fake>>,
    clients: &[reqwest::Client],
    window: Duration,
) -> u64 {
    let done = Arc::new(AtomicU64::new(0));
    let until = Instant::now() + window;
    let mut tasks = Vec::new();
    for worker in 0..CONNECTIONS {
        let (fakes, done, base) = (fakes.clone(), done.clone(), registry.url.clone());
        let clients = clients.to_vec();
        tasks.push(tokio::spawn(async move {
            let mine: Vec<&Fake> = fakes.iter().skip(worker).step_by(CONNECTIONS).collect();
            let period = Duration::from_secs(1) / mine.len() as u32;
            // Start each worker at its own offset so the load is even from the start.
            tokio::time::sleep(period * worker as u32 / CONNECTIONS as u32).await;
            let mut tick = tokio::time::interval(period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
            // A few renewals in flight per worker, so one slow answer does not hold
            // up the others (the pool opens another connection when all are busy);
            // bounded, so a stall cannot open a connection per pending renewal.
            let mut in_flight = tokio::task::JoinSet::new();
            for fake in mine.iter().cycle() {
                tick.tick().await;
                if Instant::now() >= until {
                    break;
                }
                let url = format!("{base}/v1/instances/{}/{}/lease", fake.role, fake.id);
                let request = client_for(&clients, fake.role).put(&url);
                let (done, id) = (done.clone(), fake.id.clone());
                in_flight.spawn(async move {
                    let res = request
                        .send()
                        .await
                        .unwrap_or_else(|e| panic!("renew {id}: {e}"));
                    assert!(res.status().is_success(), "renew {id}: {}", res.status());
                    res.bytes().await.unwrap();
                    done.fetch_add(1, Ordering::Relaxed);
                });
                while in_flight.len() >= IN_FLIGHT_PER_CONNECTION {
                    in_flight.join_next().await.unwrap().unwrap();
                }
            }
            while let Some(finished) = in_flight.join_next().await {
                finished.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    done.load(Ordering::Relaxed)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run with --release --ignored --nocapture"]
async fn bench_registry() {
    let sandbox = Sandbox::new();
    let clients = clients();
    let me = std::process::id() as i32;
    println!("\nregistry at scale: {CONNECTIONS} connections, roles {ROLES:?}");
    for count in [1_000, 10_000] {
        let registry = start_registry(&sandbox, &format!("reg-{count}"));
        let fakes = Arc::new(fakes(count));
        let idle_rss = rss_mib(registry.pid());
        let cpu_before = cpu_seconds(registry.pid());
        let rate = register_all(&registry, &fakes, &clients).await;
        let cpu_register = cpu_seconds(registry.pid()) - cpu_before;
        let listed = members(&catalog(&registry).await).len();
        assert_eq!(listed, count, "every registration is listed");
        println!(
            "register {count:>6}: {rate:>7.0}/s  registry CPU {:.3} ms per registration  \
             RSS {idle_rss:.1} MiB idle -> {:.1} MiB",
            cpu_register * 1000.0 / count as f64,
            rss_mib(registry.pid())
        );
        if count < 10_000 {
            continue;
        }
        // Warm up the renewal connections, then measure.
        renew_all(&registry, &fakes, &clients, Duration::from_secs(2)).await;
        let (registry_cpu, driver_cpu) = (cpu_seconds(registry.pid()), cpu_seconds(me));
        let started = Instant::now();
        let renewals = renew_all(&registry, &fakes, &clients, RENEW_WINDOW).await;
        let wall = started.elapsed().as_secs_f64();
        let registry_cpu = cpu_seconds(registry.pid()) - registry_cpu;
        let driver_cpu = cpu_seconds(me) - driver_cpu;
        let listed = members(&catalog(&registry).await).len();
        assert_eq!(listed, count, "no instance was evicted while renewing");
        println!(
            "renew  {count:>6} every second for {wall:.1} s: {:.0} renewals/s, registry {:.3} \
             of a core ({:.3} ms CPU per renewal), RSS {:.1} MiB; driver {:.3} of a core",
            renewals as f64 / wall,
            registry_cpu / wall,
            registry_cpu * 1000.0 / renewals as f64,
            rss_mib(registry.pid()),
            driver_cpu / wall,
        );
    }
}
