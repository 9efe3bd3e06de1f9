//! The gateway role: the public API edge (`/api/v1/...`). It holds no business state.
//!
//! Each public route names the role that owns the data and the internal path there; the
//! handler checks the path ids, forwards through the service client (which finds an
//! instance via discovery and passes the trace context on), and relays the owner's
//! answer. A missing or failing owner becomes a 503/504 problem, never a hang.

mod forward;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse};

use crate::platform::client::ServiceClient;
use crate::platform::problem::Problem;
use crate::platform::role::{RoleContext, RoleEntry, Routes};

use crate::platform::ids;
use forward::{forward, Target};

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../../roles/gateway.yaml"),
    start,
};

const OPENAPI: &str = include_str!("openapi.json");

fn start(ctx: &RoleContext) -> anyhow::Result<Routes> {
    let client = ctx.client.clone();
    Ok(Arc::new(move |cfg| {
        cfg.app_data(web::Data::new(client.clone()))
            .route("/api/v1/openapi.json", web::get().to(openapi))
            .route("/api/v1/products", web::get().to(list_products))
            .route("/api/v1/products", web::post().to(create_product))
            .route("/api/v1/products/{sku}", web::get().to(get_product))
            .route("/api/v1/products/{sku}/stock", web::post().to(adjust_stock))
            .route("/api/v1/orders", web::get().to(list_orders))
            .route("/api/v1/orders", web::post().to(create_order))
            .route("/api/v1/orders/{id}", web::get().to(get_order))
            .route("/api/v1/orders/{id}/cancel", web::post().to(cancel_order))
            .route("/api/v1/orders/{id}/payment", web::get().to(order_payment))
            .route(
                "/api/v1/orders/{id}/notifications",
                web::get().to(order_notifications),
            );
    }))
}

type Client = web::Data<ServiceClient>;
type Body = web::Json<serde_json::Value>;

/// Path ids are passed into internal URLs: only a safe alphabet gets through.
fn id(value: &str) -> Result<&str, Problem> {
    ids::check_id("id", value).map_err(Problem::bad_request)?;
    Ok(value)
}

fn with_query(path: String, req: &HttpRequest) -> String {
    match req.uri().query() {
        Some(q) if !q.is_empty() => format!("{path}?{q}"),
        _ => path,
    }
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

async fn list_products(client: Client, req: HttpRequest) -> Result<HttpResponse, Problem> {
    let path = with_query("/v1/products".into(), &req);
    forward(&client, Target::get("inventory", path), &req).await
}

async fn create_product(
    client: Client,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, Problem> {
    let target = Target::post("inventory", "/v1/products").json(body.into_inner());
    forward(&client, target, &req).await
}

async fn get_product(
    client: Client,
    req: HttpRequest,
    sku: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let path = format!("/v1/products/{}", id(&sku)?);
    forward(&client, Target::get("inventory", path), &req).await
}

async fn adjust_stock(
    client: Client,
    req: HttpRequest,
    sku: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, Problem> {
    let path = format!("/v1/products/{}/stock", id(&sku)?);
    forward(
        &client,
        Target::post("inventory", path).json(body.into_inner()),
        &req,
    )
    .await
}

async fn list_orders(client: Client, req: HttpRequest) -> Result<HttpResponse, Problem> {
    let path = with_query("/v1/orders".into(), &req);
    forward(&client, Target::get("orders", path), &req).await
}

async fn create_order(
    client: Client,
    req: HttpRequest,
    body: Body,
) -> Result<HttpResponse, Problem> {
    let target = Target::post("orders", "/v1/orders")
        .json(body.into_inner())
        .pass_header("idempotency-key");
    forward(&client, target, &req).await
}

async fn get_order(
    client: Client,
    req: HttpRequest,
    order: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let path = format!("/v1/orders/{}", id(&order)?);
    forward(&client, Target::get("orders", path), &req).await
}

async fn cancel_order(
    client: Client,
    req: HttpRequest,
    order: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let path = format!("/v1/orders/{}/cancel", id(&order)?);
    forward(&client, Target::post("orders", path), &req).await
}

async fn order_payment(
    client: Client,
    req: HttpRequest,
    order: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let path = format!("/v1/payments/{}", id(&order)?);
    forward(&client, Target::get("payments", path), &req).await
}

async fn order_notifications(
    client: Client,
    req: HttpRequest,
    order: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let path = format!("/v1/notifications?order_id={}", id(&order)?);
    forward(&client, Target::get("notifications", path), &req).await
}
