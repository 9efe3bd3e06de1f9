//! The gateway role: the public API edge. It holds no business state.
//!
//! Each public route names the role that owns the data; the handler forwards the call
//! through the service client (which finds an instance via discovery and passes the
//! trace context on) and relays the owner's answer. A missing or failing owner becomes
//! a 503/504 problem, never a hang.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::platform::client::{CallError, ServiceClient};
use crate::platform::problem::Problem;
use crate::platform::role::{RoleContext, RoleEntry, Routes};

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../roles/gateway.yaml"),
    start,
};

/// Public path prefix; the owner serves the same path without it.
const PUBLIC_PREFIX: &str = "/api";

fn start(ctx: &RoleContext) -> anyhow::Result<Routes> {
    let client = ctx.client.clone();
    Ok(Arc::new(move |cfg| {
        cfg.app_data(web::Data::new(client.clone()))
            .route("/api/v1/products", web::get().to(to_inventory))
            .route("/api/v1/products", web::post().to(to_inventory))
            .route("/api/v1/products/{sku}", web::get().to(to_inventory))
            .route("/api/v1/orders", web::get().to(to_orders))
            .route("/api/v1/orders/{id}", web::get().to(to_orders));
    }))
}

async fn to_inventory(
    client: web::Data<ServiceClient>,
    req: HttpRequest,
    body: Option<web::Json<serde_json::Value>>,
) -> Result<HttpResponse, Problem> {
    forward(&client, "inventory", &req, body.map(|b| b.into_inner())).await
}

async fn to_orders(
    client: web::Data<ServiceClient>,
    req: HttpRequest,
) -> Result<HttpResponse, Problem> {
    forward(&client, "orders", &req, None).await
}

/// Sends the request to `role` under the same path without the public prefix.
async fn forward(
    client: &ServiceClient,
    role: &str,
    req: &HttpRequest,
    body: Option<serde_json::Value>,
) -> Result<HttpResponse, Problem> {
    let path = req.path().strip_prefix(PUBLIC_PREFIX).unwrap_or(req.path());
    let target = match req.uri().query() {
        Some(q) => format!("{path}?{q}"),
        None => path.to_string(),
    };
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .unwrap_or(reqwest::Method::GET);
    let res = client
        .call(role, method, &target, body.as_ref())
        .await
        .map_err(|e| call_problem(role, e))?;
    let status = actix_web::http::StatusCode::from_u16(res.status)
        .unwrap_or(actix_web::http::StatusCode::BAD_GATEWAY);
    let mut out = HttpResponse::build(status);
    if let Some(ct) = res.content_type {
        out.insert_header(("content-type", ct));
    }
    Ok(out.body(res.body))
}

fn call_problem(role: &str, e: CallError) -> Problem {
    tracing::warn!(%role, error = %e, "call to owner failed");
    match e {
        CallError::Timeout { .. } => Problem::new(
            actix_web::http::StatusCode::GATEWAY_TIMEOUT,
            format!("`{role}` did not answer in time"),
        ),
        _ => Problem::unavailable(
            format!("`{role}` is not available: {e}"),
            Duration::from_secs(1),
        ),
    }
}
