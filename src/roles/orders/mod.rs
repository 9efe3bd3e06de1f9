//! The orders role: owns orders, runs the saga that carries each one to confirmed or
//! cancelled, and publishes `order.confirmed` / `order.cancelled` through its outbox.
//!
//! - [`order`]: the order, its steps and the transition rules (pure).
//! - [`book`]: the redb tables and the transactions on them.
//! - [`saga`]: the runner that drives unfinished orders.
//! - [`http`]: thin handlers.

mod book;
mod http;
mod order;
mod saga;

use std::sync::Arc;

use crate::platform::events::OutboxRelay;
use crate::platform::role::{RoleContext, RoleEntry, Routes};

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../../roles/orders.yaml"),
    start,
};

fn start(ctx: &RoleContext) -> anyhow::Result<Routes> {
    let book = book::OrderBook::new(ctx.store.clone(), ctx.config.shard, ctx.instance_id.clone());
    let relay = OutboxRelay::new(
        ctx.store.clone(),
        ctx.client.clone(),
        &ctx.catalog,
        &ctx.manifest,
    );
    let runner = Arc::new(saga::SagaRunner::new(
        book.clone(),
        ctx.client.clone(),
        relay.signal(),
        ctx.config.orders.step_retry_max,
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
        create_wait: ctx.config.orders.create_wait,
    };
    Ok(Arc::new(move |cfg| http::routes(cfg, state.clone())))
}
