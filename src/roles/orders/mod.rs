//! The orders role: owns orders, runs the saga that carries each one to confirmed or
//! cancelled, and publishes `order.confirmed` / `order.cancelled` through its outbox.
//!
//! - [`order`]: the order, its steps and the transition rules (pure).
//! - [`book`]: the redb tables and the transactions on them.
//! - [`placement`]: which inventory and payments shards hold an order's parts (pure).
//! - [`place`]: placing an order, the use case behind a create.
//! - [`cancel`]: cancelling an order, the use case behind a customer's cancel.
//! - [`saga`]: the runner that drives unfinished orders, and waits for one to end.
//! - [`view`]: the order as the public API shows it.
//! - [`http`]: thin handlers.
//!
//! This instance owns one shard: the ids it mints carry it (`ord-<shard>-<ulid>`), and
//! an `Idempotency-Key` is only accepted by the shard it hashes to.

mod book;
mod cancel;
mod cards;
mod http;
mod known_products;
mod order;
mod place;
mod placement;
mod saga;
pub mod settings;
#[cfg(test)]
mod testing;
mod view;

use std::sync::Arc;

use svc_platform::events::OutboxRelay;
use svc_platform::role::{RoleContext, Routes};
use svc_platform::shards::ShardOwnership;

use super::RoleEntry;
use settings::OrdersSettings;

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../../roles/orders.yaml"),
    start: |ctx, config| start(ctx, &config.orders),
};

fn start(ctx: &RoleContext, settings: &OrdersSettings) -> anyhow::Result<Routes> {
    let book = book::OrderBook::new(
        ctx.store.clone(),
        ctx.config.shard,
        ctx.instance_id.clone(),
        ctx.store.secret_key("fingerprint")?,
    );
    let scrubbed = book.scrub_legacy_cards()?;
    if scrubbed > 0 {
        tracing::info!(
            rows = scrubbed,
            "card numbers left by an earlier version scrubbed"
        );
    }
    let relay = OutboxRelay::new(
        ctx.store.clone(),
        ctx.client.clone(),
        &ctx.catalog,
        &ctx.manifest,
        &ctx.config.shards,
    );
    let runner = Arc::new(saga::SagaRunner::new(
        book.clone(),
        ctx.client.clone(),
        relay.signal(),
        saga::SagaSettings {
            retry_max: settings.step_retry_max.get(),
            shards: ctx.config.shards.clone(),
        },
        ctx.shutdown.clone(),
    ));
    relay.spawn(ctx.shutdown.clone());
    let resumed = runner.resume_all()?;
    if resumed > 0 {
        tracing::info!(orders = resumed, "resuming unfinished sagas");
    }
    let state = http::OrdersState {
        book,
        runner,
        client: ctx.client.clone(),
        create_wait: settings.create_wait,
        ownership: ShardOwnership::new(
            ctx.manifest.name.clone(),
            ctx.config.shard,
            ctx.config.shards.clone(),
        ),
        shards: ctx.config.shards.clone(),
        known_products: Arc::default(),
    };
    Ok(Arc::new(move |cfg| http::routes(cfg, state.clone())))
}
