//! `svc status`: what runs, as the registry sees it, and how each instance is doing.
//!
//! The catalog comes from the first registry that answers (exit 1 with a clear message
//! when none does). Then, for every instance at once: `GET /health/ready` with a short
//! timeout, and two scrapes of `/metrics` `--window` apart, whose difference gives the
//! request rate and the p99 latency over the window ([`prom`]); the 5xx count is since
//! the instance started. Every configured registry is probed too, so a dead one shows.
//! Roles of the catalog with no instance are listed, so a missing role is seen.
//!
//! Reading the catalog and scraping an instance ([`look_at_cluster`], [`scrape_samples`])
//! are shared with `svc bench`, which scrapes every instance before and after its run.

pub(super) mod prom;
mod report;

use std::process::ExitCode;
use std::time::{Duration, Instant};

use futures::future::join_all;

use super::{fail, EXIT_FAILURE};
use crate::cli::{IdentityArgs, StatusArgs};
use crate::roles;
use prom::Figures;
use report::{InstanceStatus, RegistryStatus, Report};
use svc_platform::clock::now_ms;
use svc_platform::registry_api::{Catalog, Instance};
use svc_platform::registry_client::RegistryClient;
use svc_platform::tls::http_client_builder;

/// A health probe or scrape that takes longer than this says enough about the instance.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

pub fn run(args: StatusArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(EXIT_FAILURE, e),
    };
    let report = match runtime.block_on(gather(&args)) {
        Ok(report) => report,
        Err(message) => return fail(EXIT_FAILURE, message),
    };
    if args.json {
        match serde_json::to_string_pretty(&report) {
            Ok(text) => println!("{text}"),
            Err(e) => return fail(EXIT_FAILURE, e),
        }
    } else {
        print!("{}", report.table());
    }
    ExitCode::SUCCESS
}

/// The cluster as an operator's tool sees it: the catalog of the first registry that
/// answers, and a client presenting the operator's certificate for the instances.
pub(super) struct ClusterLook {
    /// The registry the catalog was read from.
    pub registry: String,
    pub catalog: Catalog,
    /// Mutual TLS with `--identity`, timing out after [`PROBE_TIMEOUT`].
    pub http: reqwest::Client,
}

/// Reads the catalog from the first of `registries` that answers.
pub(super) async fn look_at_cluster(
    registries: &[String],
    identity: &IdentityArgs,
) -> Result<ClusterLook, String> {
    let tls = super::load_identity(identity)?;
    let client = RegistryClient::new(registries.to_vec(), Duration::from_secs(3), tls.as_ref())
        .map_err(|e| format!("{e:#}"))?;
    let (registry, catalog) = client
        .catalog_from_any()
        .await
        .map_err(|e| format!("no registry answered ({}): {e}", registries.join(", ")))?;
    let http = http_client_builder(tls.as_ref(), None)
        .timeout(PROBE_TIMEOUT)
        .build()
        .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
    Ok(ClusterLook {
        registry,
        catalog,
        http,
    })
}

async fn gather(args: &StatusArgs) -> Result<Report, String> {
    let ClusterLook {
        registry: url,
        catalog,
        http,
    } = look_at_cluster(&args.registries, &args.identity).await?;
    // Lease ages as of the catalog read, not after the scrape window.
    let read_at = now_ms();
    let instances: Vec<&Instance> = catalog.roles.values().flatten().collect();

    let registries = join_all(args.registries.iter().map(|r| probe_registry(&http, r)));
    let first = join_all(instances.iter().map(|i| first_look(&http, i)));
    let (registries, first) = futures::join!(registries, first);
    let started = Instant::now();
    tokio::time::sleep(args.window).await;
    let second = join_all(instances.iter().map(|i| scrape(&http, &i.address))).await;
    let window = started.elapsed();

    let statuses = instances
        .iter()
        .zip(first)
        .zip(second)
        .map(|((i, (health, before)), after)| {
            InstanceStatus::new(i, health, before, after, window, read_at)
        })
        .collect();
    let known: Vec<String> = roles::built_in()
        .iter()
        .filter(|m| m.registers)
        .map(|m| m.name.clone())
        .collect();
    Ok(Report::new(
        url,
        catalog.index,
        registries,
        &known,
        statuses,
        window,
    ))
}

/// Whether the instance answers `/health/ready` with 200, and a first scrape.
async fn first_look(
    http: &reqwest::Client,
    instance: &Instance,
) -> (Result<(), String>, Result<Figures, String>) {
    futures::join!(
        ready(http, &instance.address),
        scrape(http, &instance.address)
    )
}

async fn ready(http: &reqwest::Client, base: &str) -> Result<(), String> {
    let url = format!("{}/health/ready", base.trim_end_matches('/'));
    match http.get(&url).send().await {
        Ok(res) if res.status().is_success() => Ok(()),
        Ok(res) => Err(format!("not ready ({})", res.status().as_u16())),
        Err(e) if e.is_timeout() => Err("no answer within 1s".to_string()),
        Err(_) => Err("unreachable".to_string()),
    }
}

async fn scrape(http: &reqwest::Client, base: &str) -> Result<Figures, String> {
    scrape_samples(http, base)
        .await
        .map(|samples| Figures::from_samples(&samples))
}

/// Every sample of the instance at `base`'s `/metrics`; the error says what failed.
pub(super) async fn scrape_samples(
    http: &reqwest::Client,
    base: &str,
) -> Result<Vec<prom::Sample>, String> {
    let url = format!("{}/metrics", base.trim_end_matches('/'));
    let res = http
        .get(&url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    if !res.status().is_success() {
        return Err(format!("GET {url}: {}", res.status()));
    }
    let text = res.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    Ok(prom::parse(&text))
}

async fn probe_registry(http: &reqwest::Client, url: &str) -> RegistryStatus {
    RegistryStatus {
        url: url.to_string(),
        health: match ready(http, url).await {
            Ok(()) => "ready".to_string(),
            Err(e) => e,
        },
    }
}
