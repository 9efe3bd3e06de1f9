//! The inventory role: owns products, their stock, and the reservations orders make.
//!
//! - [`products`]: the catalogue and its stock buckets (available, reserved, sold).
//! - [`lookup`]: which of many SKUs exist, in one call (orders' check of an order).
//! - [`product_name`]: what a product's name may contain.
//! - [`reserve_request`]: what a reserve request must hold, checked at the edge.
//! - [`reservations`]: hold, commit and release stock for an order, all idempotent.
//! - [`holds`]: the deadline index of held reservations.
//! - [`expiry`]: gives back the stock of holds never committed.
//! - [`http`]: the `/v1/` API, thin handlers over the above.
//! - [`error`]: every refusal, typed.
//!
//! Every change is one command, applied in one redb write transaction over products and
//! reservations together, so for every product `available + reserved + sold` is all
//! stock ever added.
//!
//! This instance owns one shard: the products whose SKU hashes to it
//! (`fnv1a64(sku) % shards(inventory)`), and the reservations of their lines. A create
//! or stock change for a SKU of another shard is refused with 421, so a product can
//! never exist twice.

mod error;
mod expiry;
mod holds;
mod http;
mod lookup;
mod product_name;
mod products;
mod reservations;
mod reserve_request;
pub mod settings;

#[cfg(test)]
mod domain_tests;

use std::sync::Arc;

use svc_platform::role::{RoleContext, Routes};
use svc_platform::shards::ShardOwnership;

use super::RoleEntry;
use settings::InventorySettings;

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../../roles/inventory.yaml"),
    start: |ctx, config| start(ctx, &config.inventory),
};

fn start(ctx: &RoleContext, settings: &InventorySettings) -> anyhow::Result<Routes> {
    let rebuilt = ctx.store.submit_blocking(holds::RebuildIndex)?;
    if rebuilt > 0 {
        tracing::info!(
            holds = rebuilt,
            "rebuilt the deadline index of held reservations"
        );
    }
    expiry::spawn(
        ctx.store.clone(),
        settings.expiry_sweep.get(),
        ctx.shutdown.clone(),
    );
    let state = Arc::new(http::Inventory {
        store: ctx.store.clone(),
        reservation_ttl_ms: u64::try_from(settings.reservation_ttl.get().as_millis())
            .unwrap_or(u64::MAX),
        ownership: ShardOwnership::new(
            ctx.manifest.name.clone(),
            ctx.config.shard,
            ctx.config.shards.clone(),
        ),
    });
    Ok(Arc::new(move |cfg| http::routes(cfg, state.clone())))
}
