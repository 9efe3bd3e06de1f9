//! `svc bench`: a load generator that places orders through a running gateway, and
//! what those orders cost each role of the cluster.
//!
//! It makes sure its products exist ([`products`]: a fixed set, reused by every run),
//! scrapes every process of the cluster ([`costs`]: the registry's catalog and
//! `/metrics` over mutual TLS, as `svc status` reads them), keeps `--concurrency` orders
//! in flight for `--duration` ([`load`]), scrapes again, and prints confirmed orders per
//! second, latency percentiles, and per role CPU milliseconds and syncs per confirmed
//! order ([`report`]). Anyone can run it against `svc dev` to reproduce the figures in
//! docs/MEASUREMENTS.md. Without a registry to ask (another cluster, no operator
//! certificate) it still places the orders and says why the table is missing.

mod costs;
mod load;
mod products;
mod report;

use std::process::ExitCode;
use std::time::Duration;

use super::status::look_at_cluster;
use super::{fail, EXIT_FAILURE, EXIT_USAGE};
use crate::cli::BenchArgs;
use crate::roles;
use costs::{Costs, Target};

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
    let http = public_client(&args)?;
    let base = args.gateway.trim_end_matches('/').to_string();
    products::ensure(&http, &base).await?;

    // Every process, as the registry's catalog lists it now, and the registries.
    let cluster = match look_at_cluster(&args.registries, &args.identity).await {
        Ok(look) => Some((targets(&args.registries, &look.catalog), look.http)),
        Err(e) => {
            eprintln!("svc bench: no cost per role: {e}");
            None
        }
    };
    let before = match &cluster {
        Some((targets, http)) => costs::scrape_all(http, targets).await,
        None => Vec::new(),
    };

    println!(
        "placing orders through {base} for {} at concurrency {}",
        humantime::format_duration(args.duration),
        args.concurrency
    );
    let outcome = load::place_orders(
        &http,
        &base,
        &products::skus(),
        args.concurrency,
        args.duration,
    )
    .await?;
    print!("{}", report::throughput(&outcome));

    if let Some((targets, http)) = &cluster {
        let after = costs::scrape_all(http, targets).await;
        let order: Vec<String> = roles::built_in().iter().map(|m| m.name.clone()).collect();
        let costs = Costs::new(targets, before, after, outcome.confirmed, &order);
        print!("\n{}", report::cost_table(&costs));
    }
    Ok(())
}

/// The client of the public API: the API key on every request, a connection per worker.
fn public_client(args: &BenchArgs) -> anyhow::Result<reqwest::Client> {
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
    Ok(reqwest::Client::builder()
        .default_headers(headers)
        .pool_max_idle_per_host(args.concurrency)
        .timeout(Duration::from_secs(30))
        .build()?)
}

/// The registries (which are not in their own catalog), then every catalog instance.
fn targets(registries: &[String], catalog: &svc_platform::registry_api::Catalog) -> Vec<Target> {
    let registry_role = roles::built_in()
        .iter()
        .find(|m| m.is_registry())
        .map_or_else(|| "registry".to_string(), |m| m.name.clone());
    let registries = registries.iter().map(|url| Target {
        role: registry_role.clone(),
        name: url.clone(),
        address: url.clone(),
    });
    let instances = catalog.roles.values().flatten().map(|i| Target {
        role: i.role.clone(),
        name: i.instance_id.clone(),
        address: i.address.clone(),
    });
    registries.chain(instances).collect()
}
