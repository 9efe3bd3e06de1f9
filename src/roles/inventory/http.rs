//! The inventory's HTTP API under `/v1/`: thin handlers over the domain functions.
//!
//! Each handler parses (body, path ids, query) into checked values, submits one command
//! (or calls one read), and maps the result. Every refusal is a `problem+json` whose status is decided here, in
//! [`From<InventoryError> for Problem`], and nowhere else.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use serde::{Deserialize, Serialize};

use super::error::InventoryError;
use super::lookup::{self, LookupRequest};
use super::products::{self, NewProduct, StockChange};
use super::reservations::{self, Reservation, ReservationStatus, Reserved};
use super::reserve_request::{check_order_id, ReserveRequest};
use svc_platform::clock::now_ms;
use svc_platform::problem::Problem;
use svc_platform::shards::ShardOwnership;
use svc_platform::store::Store;

/// What every handler shares.
pub struct Inventory {
    pub store: Arc<Store>,
    /// How long a new reservation is held before it expires.
    pub reservation_ttl_ms: u64,
    /// The shard this instance owns: a product belongs to the shard its SKU hashes to,
    /// and any other shard refuses to write it (a read there finds nothing: 404).
    pub ownership: ShardOwnership,
}

type State = web::Data<Inventory>;

pub fn routes(cfg: &mut web::ServiceConfig, state: Arc<Inventory>) {
    cfg.app_data(web::Data::from(state))
        .route("/v1/products", web::get().to(list_products))
        .route("/v1/products", web::post().to(create_product))
        .route("/v1/products/{sku}", web::get().to(get_product))
        .route("/v1/products/{sku}/stock", web::post().to(adjust_stock))
        .route("/v1/product-lookups", web::post().to(look_up_products))
        .route("/v1/reservations", web::get().to(list_reservations))
        .route("/v1/reservations", web::post().to(reserve))
        .route(
            "/v1/reservations/{order_id}",
            web::get().to(get_reservation),
        )
        .route("/v1/reservations/{order_id}/commit", web::post().to(commit))
        .route(
            "/v1/reservations/{order_id}/release",
            web::post().to(release),
        );
}

impl From<InventoryError> for Problem {
    fn from(e: InventoryError) -> Self {
        use InventoryError as E;
        match e {
            E::Invalid(m) => Problem::bad_request(m),
            E::UnknownProduct(_) | E::UnknownReservation(_) => Problem::not_found(e.to_string()),
            E::ProductExists(_)
            | E::NotEnoughToRemove { .. }
            | E::StockOverflow(_)
            | E::OutOfStock(_)
            | E::DifferentLines(_)
            | E::AlreadyReleased { .. }
            | E::AlreadyCommitted(_) => Problem::conflict(e.to_string()),
            E::Inconsistent(_) => {
                tracing::error!(error = %e, "inventory state is inconsistent");
                Problem::internal(e.to_string())
            }
            E::Store(e) => e.into(),
        }
    }
}

fn sku_from(path: web::Path<String>) -> Result<String, Problem> {
    let sku = path.into_inner();
    products::check_sku(&sku).map_err(Problem::bad_request)?;
    Ok(sku)
}

fn order_id_from(path: web::Path<String>) -> Result<String, Problem> {
    let id = path.into_inner();
    check_order_id(&id)?;
    Ok(id)
}

async fn create_product(
    state: State,
    body: web::Json<NewProduct>,
) -> Result<HttpResponse, Problem> {
    let product = body.into_inner().parse()?;
    state.ownership.check_key("sku", &product.sku)?;
    state
        .store
        .submit(products::CreateProduct(product.clone()))
        .await?;
    Ok(HttpResponse::Created()
        .insert_header(("location", format!("/v1/products/{}", product.sku)))
        .json(product))
}

async fn get_product(state: State, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let sku = sku_from(path)?;
    products::get_product(&state.store, &sku)?
        .map(|p| HttpResponse::Ok().json(p))
        .ok_or_else(|| InventoryError::UnknownProduct(sku).into())
}

/// Which of the SKUs exist; every one must belong to this shard.
async fn look_up_products(
    state: State,
    body: web::Json<LookupRequest>,
) -> Result<HttpResponse, Problem> {
    let skus = body.into_inner().parse()?;
    for sku in &skus {
        state.ownership.check_key("sku", sku)?;
    }
    let answer = lookup::look_up(&state.store, skus)?;
    Ok(HttpResponse::Ok().json(answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct PageQuery {
    limit: Option<usize>,
    after: Option<String>,
}

async fn list_products(
    state: State,
    query: web::Query<PageQuery>,
) -> Result<HttpResponse, Problem> {
    let PageQuery { limit, after } = query.into_inner();
    let limit = products::page_size(limit)?;
    if let Some(after) = &after {
        products::check_sku(after).map_err(|m| Problem::bad_request(format!("after: {m}")))?;
    }
    let page = products::list_products(&state.store, after.as_deref(), limit)?;
    Ok(HttpResponse::Ok().json(page))
}

async fn adjust_stock(
    state: State,
    path: web::Path<String>,
    body: web::Json<StockChange>,
) -> Result<HttpResponse, Problem> {
    let sku = sku_from(path)?;
    state.ownership.check_key("sku", &sku)?;
    let delta = body.into_inner().parse()?;
    let product = state
        .store
        .submit(products::AdjustStock { sku, delta })
        .await?;
    Ok(HttpResponse::Ok().json(product))
}

async fn reserve(state: State, body: web::Json<ReserveRequest>) -> Result<HttpResponse, Problem> {
    let order = body.into_inner().parse()?;
    let reserve = reservations::Reserve {
        order,
        now_ms: now_ms(),
        ttl_ms: state.reservation_ttl_ms,
    };
    let reserved = state.store.submit(reserve).await?;
    Ok(match reserved {
        Reserved::Created(r) => {
            tracing::info!(order_id = %r.order_id, total_minor = r.total_minor, "stock reserved");
            HttpResponse::Created()
                .insert_header(("location", format!("/v1/reservations/{}", r.order_id)))
                .json(r)
        }
        Reserved::Existing(r) => HttpResponse::Ok().json(r),
    })
}

async fn commit(state: State, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let order_id = order_id_from(path)?;
    let commit = reservations::CommitReservation { order_id };
    let r = state.store.submit(commit).await?;
    Ok(HttpResponse::Ok().json(r))
}

async fn release(state: State, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let order_id = order_id_from(path)?;
    let release = reservations::ReleaseReservation {
        order_id,
        now_ms: now_ms(),
    };
    let r = state.store.submit(release).await?;
    Ok(HttpResponse::Ok().json(r))
}

async fn get_reservation(state: State, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let order_id = order_id_from(path)?;
    reservations::get_reservation(&state.store, &order_id)?
        .map(|r| HttpResponse::Ok().json(r))
        .ok_or_else(|| InventoryError::UnknownReservation(order_id).into())
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct StatusQuery {
    status: Option<ReservationStatus>,
}

async fn list_reservations(
    state: State,
    query: web::Query<StatusQuery>,
) -> Result<HttpResponse, Problem> {
    /// A typed body keeps each reservation's fields in their declared order.
    #[derive(Serialize)]
    struct List {
        reservations: Vec<Reservation>,
    }
    let reservations = reservations::list_reservations(&state.store, query.status)?;
    Ok(HttpResponse::Ok().json(List { reservations }))
}
