//! The payments role: owns payments (authorize, capture, void) and their ledger.
//!
//! For now it answers the payment of an order from its redb file; the order flow adds
//! the operations that write it.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use redb::TableDefinition;

use crate::platform::problem::Problem;
use crate::platform::role::{RoleContext, RoleEntry, Routes};
use crate::platform::store::{JsonTable, Store};

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../roles/payments.yaml"),
    start,
};

const PAYMENTS: JsonTable = TableDefinition::new("payments");

fn start(ctx: &RoleContext) -> anyhow::Result<Routes> {
    let store = ctx.store.clone();
    Ok(Arc::new(move |cfg| {
        cfg.app_data(web::Data::new(store.clone()))
            .route("/v1/payments/{order_id}", web::get().to(payment_of_order));
    }))
}

async fn payment_of_order(
    store: web::Data<Arc<Store>>,
    order_id: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    store
        .get_json::<serde_json::Value>(PAYMENTS, &order_id)?
        .map(|p| HttpResponse::Ok().json(p))
        .ok_or_else(|| Problem::not_found(format!("no payment for order `{order_id}`")))
}
