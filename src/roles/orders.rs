//! The orders role: owns orders and (with the order flow) their saga and outbox.
//!
//! For now it serves its orders from its redb file; the saga that fills it builds on
//! this module.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use redb::TableDefinition;

use crate::platform::problem::Problem;
use crate::platform::role::{RoleContext, RoleEntry, Routes};
use crate::platform::store::{JsonTable, Store};

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../roles/orders.yaml"),
    start,
};

const ORDERS: JsonTable = TableDefinition::new("orders");

fn start(ctx: &RoleContext) -> anyhow::Result<Routes> {
    let store = ctx.store.clone();
    Ok(Arc::new(move |cfg| {
        cfg.app_data(web::Data::new(store.clone()))
            .route("/v1/orders", web::get().to(list))
            .route("/v1/orders/{id}", web::get().to(get));
    }))
}

async fn list(store: web::Data<Arc<Store>>) -> Result<HttpResponse, Problem> {
    let orders: Vec<serde_json::Value> = store.scan_json(ORDERS)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "orders": orders })))
}

async fn get(store: web::Data<Arc<Store>>, id: web::Path<String>) -> Result<HttpResponse, Problem> {
    match store.get_json::<serde_json::Value>(ORDERS, &id)? {
        Some(order) => Ok(HttpResponse::Ok().json(order)),
        None => Err(Problem::not_found(format!("no order `{id}`"))),
    }
}
