//! The products `svc bench` orders: a fixed set of 16, `zz-bench-00` to `zz-bench-15`,
//! made by the first run against a cluster and reused by every later one, so benchmarks
//! leave the same 16 products however often they run (the public API deletes no
//! product, so a bench cannot clean up after itself).
//!
//! Sixteen, so that every shard of a sharded inventory gets some (a SKU lives on the
//! shard it hashes to); the `zz-` prefix sorts them after the catalog's own products in
//! listings, which page in SKU order. Each starts with the most stock inventory takes,
//! and a run that finds one nearly sold out adds stock back before it starts.

use anyhow::{bail, Context as _};

/// How many bench products there are, and their SKUs.
pub const COUNT: usize = 16;

pub fn skus() -> Vec<String> {
    (0..COUNT).map(|i| format!("zz-bench-{i:02}")).collect()
}

/// All stock a product may ever receive (inventory's `MAX_STOCK`).
const FULL_STOCK: u64 = 1_000_000_000;
/// Below this many available units a run first adds stock back.
const REFILL_BELOW: u64 = 10_000_000;

/// Makes sure every bench product exists with ample stock, through the public API.
pub async fn ensure(http: &reqwest::Client, base: &str) -> anyhow::Result<()> {
    for sku in skus() {
        let created = http
            .post(format!("{base}/api/v1/products"))
            .json(&serde_json::json!({
                "sku": sku,
                "name": "svc bench product (reused by every run)",
                "price_minor": 100,
                "stock": FULL_STOCK,
            }))
            .send()
            .await
            .with_context(|| format!("gateway {base} cannot be reached (is `svc dev` running?)"))?;
        match created.status().as_u16() {
            201 => {}
            409 => refill(http, base, &sku).await?,
            _ => bail!(
                "could not create the bench product {sku}: {}",
                created.text().await.unwrap_or_default()
            ),
        }
    }
    Ok(())
}

/// Adds stock back to an existing bench product that is running low.
async fn refill(http: &reqwest::Client, base: &str, sku: &str) -> anyhow::Result<()> {
    let url = format!("{base}/api/v1/products/{sku}");
    let product: serde_json::Value = http
        .get(&url)
        .send()
        .await
        .and_then(reqwest::Response::error_for_status)
        .with_context(|| format!("GET {url}"))?
        .json()
        .await
        .with_context(|| format!("GET {url}"))?;
    let units = |field: &str| product.get(field).and_then(|v| v.as_u64()).unwrap_or(0);
    let available = units("available");
    if available >= REFILL_BELOW {
        return Ok(());
    }
    let ever_added = available + units("reserved") + units("sold");
    let room = FULL_STOCK.saturating_sub(ever_added);
    if room == 0 {
        bail!("the bench product {sku} has sold all the stock inventory allows ({FULL_STOCK})");
    }
    let res = http
        .post(format!("{url}/stock"))
        .json(&serde_json::json!({ "delta": room }))
        .send()
        .await
        .with_context(|| format!("POST {url}/stock"))?;
    if !res.status().is_success() {
        bail!(
            "could not add stock to the bench product {sku}: {}",
            res.text().await.unwrap_or_default()
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use svc_platform::ids::check_id;
    use svc_platform::shards::shard_for_key;

    #[test]
    fn the_bench_products_are_valid_skus_on_every_shard_of_a_few() {
        let skus = skus();
        assert_eq!(skus.len(), COUNT);
        for sku in &skus {
            check_id("sku", sku).unwrap();
        }
        for shards in 1..=4 {
            for shard in 0..shards {
                assert!(
                    skus.iter().any(|s| shard_for_key(s, shards) == shard),
                    "no bench product on shard {shard} of {shards}"
                );
            }
        }
    }

    #[test]
    fn they_sort_after_the_seed_catalog() {
        let seed: Vec<serde_json::Value> =
            serde_json::from_str(include_str!("../../../config/seed-products.json")).unwrap();
        for product in seed {
            let sku = product["sku"].as_str().unwrap();
            assert!(skus().iter().all(|b| b.as_str() > sku), "{sku}");
        }
    }
}
