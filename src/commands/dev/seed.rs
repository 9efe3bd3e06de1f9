//! The seed catalog `svc dev` loads through the gateway, so a new user can place an
//! order at once (`config/seed-products.json`, embedded at build time).
//!
//! It goes through the public API like any client: a product that already exists (a
//! second `svc dev` on the same data dir) answers 409 and is left as it is. The gateway
//! may not see inventory for a few milliseconds after start-up, so 503s are retried
//! briefly; a seed that still fails is reported, not fatal.

use std::time::{Duration, Instant};

use super::console;

const SEED: &str = include_str!("../../../config/seed-products.json");
const PATIENCE: Duration = Duration::from_secs(10);

/// Creates the seed products through the gateway at `gateway`; returns how many were new.
pub async fn load(gateway: &str, api_key: &str) -> usize {
    let products: Vec<serde_json::Value> = match serde_json::from_str(SEED) {
        Ok(p) => p,
        Err(e) => {
            console::note(format!("seed catalog unreadable: {e}"));
            return 0;
        }
    };
    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/products", gateway.trim_end_matches('/'));
    let deadline = Instant::now() + PATIENCE;
    let mut created = 0;
    for product in &products {
        loop {
            let res = http
                .post(&url)
                .bearer_auth(api_key)
                .json(product)
                .timeout(Duration::from_secs(5))
                .send()
                .await;
            match res.map(|r| r.status().as_u16()) {
                Ok(201) => {
                    created += 1;
                    break;
                }
                Ok(409) => break,
                Ok(status) if status < 500 => {
                    console::note(format!("seed product refused ({status}): {product}"));
                    break;
                }
                other if Instant::now() >= deadline => {
                    console::note(format!("seed catalog not loaded: {other:?}"));
                    return created;
                }
                _ => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }
    created
}
