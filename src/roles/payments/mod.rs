//! The payments role: owns the payment of each order and the ledger of their changes.
//!
//! - [`payment`]: what a payment is, what an authorize request must hold, when it is
//!   declined. No storage.
//! - [`transitions`]: authorize, capture, void; idempotent, one transaction each.
//! - [`card_vault`]: the card of each order, sealed, until its payment is decided.
//! - [`ledger`]: the append-only record of every change, and totals replayed from it.
//! - [`http`]: the `/v1/` API, thin handlers over the above.
//! - [`error`]: every refusal, typed.
//!
//! This instance owns one shard: the payments of the orders whose id hashes to it
//! (`fnv1a64(order id) % shards(payments)`). A change to the payment of an order of
//! another shard is refused with 421, so no payment is ever written where no one looks.

mod card_vault;
mod error;
mod http;
mod ledger;
mod payment;
pub mod settings;
mod transitions;

#[cfg(test)]
mod domain_tests;

use std::sync::Arc;

use svc_platform::role::{RoleContext, Routes};
use svc_platform::shards::ShardOwnership;

use super::RoleEntry;
use settings::PaymentsSettings;

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../../roles/payments.yaml"),
    start: |ctx, config| start(ctx, &config.payments),
};

fn start(ctx: &RoleContext, settings: &PaymentsSettings) -> anyhow::Result<Routes> {
    let vault = card_vault::CardVault::new(ctx.store.secret_key("card")?);
    card_vault::spawn_expiry(ctx.store.clone(), ctx.shutdown.clone());
    let state = Arc::new(http::Payments {
        store: ctx.store.clone(),
        vault,
        decline_above_minor: settings.decline_above_minor,
        ownership: ShardOwnership::new(
            ctx.manifest.name.clone(),
            ctx.config.shard,
            ctx.config.shards.clone(),
        ),
    });
    Ok(Arc::new(move |cfg| http::routes(cfg, state.clone())))
}
