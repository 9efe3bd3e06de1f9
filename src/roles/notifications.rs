//! The notifications role: records the notifications sent for order events.
//!
//! For now it lists what its redb file holds; the order flow adds the event consumer
//! (with its inbox) that writes it.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use redb::TableDefinition;

use crate::platform::problem::Problem;
use crate::platform::role::{RoleContext, RoleEntry, Routes};
use crate::platform::store::{JsonTable, Store};

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../roles/notifications.yaml"),
    start,
};

const NOTIFICATIONS: JsonTable = TableDefinition::new("notifications");

fn start(ctx: &RoleContext) -> anyhow::Result<Routes> {
    let store = ctx.store.clone();
    Ok(Arc::new(move |cfg| {
        cfg.app_data(web::Data::new(store.clone()))
            .route("/v1/notifications", web::get().to(list));
    }))
}

async fn list(store: web::Data<Arc<Store>>) -> Result<HttpResponse, Problem> {
    let all: Vec<serde_json::Value> = store.scan_json(NOTIFICATIONS)?;
    Ok(HttpResponse::Ok().json(serde_json::json!({ "notifications": all })))
}
