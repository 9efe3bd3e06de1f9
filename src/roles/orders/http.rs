//! The orders role's HTTP API: thin handlers over the order book and the use cases
//! [`place_order`] and [`cancel_order`].
//!
//! Each handler parses (body, headers, path, query) into checked values, calls one
//! domain function, and maps the result: a create answers 201 with the final order if
//! its saga ended within the wait, 200 for a replayed key whose order is final, and
//! otherwise 202 with the pending order and where to poll; a cancel answers 200 with the
//! cancelled order, or 202 while its saga compensates. Orders are always shown as
//! [`OrderView`]s. The status of each refusal is decided here, in the `From` impls for
//! [`Problem`], and nowhere else.
//!
//! An `Idempotency-Key` belongs to one shard (`fnv1a64(key) % shards(orders)`), where
//! the gateway sends it; another shard refuses it with 421 rather than create a second
//! order for the same key.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::book::{BookError, OrderBook};
use super::cancel::{cancel_order, CancelError};
use super::cards::{CardHoldError, PaymentsCardVault};
use super::known_products::KnownProducts;
use super::order::{check_id, NewOrder, Order};
use super::place::{
    place_order, IdempotencyKey, InventoryCatalogue, PlaceError, Placed, ProductCheckError,
};
use super::saga::SagaRunner;
use super::view::{OrderPage, OrderView};
use svc_platform::client::ServiceClient;
use svc_platform::problem::Problem;
use svc_platform::shards::{ShardCounts, ShardOwnership};

const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_PAGE: usize = 1000;

#[derive(Clone)]
pub struct OrdersState {
    pub book: OrderBook,
    pub runner: Arc<SagaRunner>,
    /// Asks inventory whether the products of a new order exist.
    pub client: ServiceClient,
    pub create_wait: Duration,
    /// The shard this instance owns, which refuses keys and ids of other shards.
    pub ownership: ShardOwnership,
    pub shards: ShardCounts,
    /// Products inventory confirmed before: not asked again.
    pub known_products: Arc<KnownProducts>,
}

type State = web::Data<OrdersState>;

pub fn routes(cfg: &mut web::ServiceConfig, state: OrdersState) {
    cfg.app_data(web::Data::new(state))
        .route("/v1/orders", web::post().to(create))
        .route("/v1/orders", web::get().to(list))
        .route("/v1/orders/{id}", web::get().to(get))
        .route("/v1/orders/{id}/cancel", web::post().to(cancel));
}

impl From<BookError> for Problem {
    fn from(e: BookError) -> Self {
        match e {
            BookError::KeyReused(_) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            BookError::NotFound(_) => Problem::not_found(e.to_string()),
            BookError::AlreadyConfirmed(_) | BookError::BeingConfirmed(_) => {
                Problem::conflict(e.to_string())
            }
            BookError::Store(e) => e.into(),
        }
    }
}

impl From<PlaceError> for Problem {
    fn from(e: PlaceError) -> Self {
        match e {
            PlaceError::Products(ProductCheckError::Unknown(_)) => {
                Problem::new(StatusCode::UNPROCESSABLE_ENTITY, e.to_string())
            }
            PlaceError::Products(ProductCheckError::Unavailable(m)) => {
                Problem::unavailable(m, Duration::from_secs(1))
            }
            PlaceError::Card(CardHoldError::Refused(_)) => Problem::bad_request(e.to_string()),
            PlaceError::Card(CardHoldError::Unavailable(m)) => {
                Problem::unavailable(m, Duration::from_secs(1))
            }
            PlaceError::Book(e) => e.into(),
            PlaceError::StoreTask(_) => Problem::internal(e.to_string()),
        }
    }
}

impl From<CancelError> for Problem {
    fn from(e: CancelError) -> Self {
        match e {
            CancelError::Book(e) => e.into(),
            CancelError::ConfirmedFirst(_) => Problem::conflict(e.to_string()),
            CancelError::StoreTask(_) => Problem::internal(e.to_string()),
        }
    }
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, Problem> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    IdempotencyKey::from_header(value.as_bytes())
        .map(Some)
        .map_err(|e| Problem::bad_request(e.to_string()))
}

/// Refuses a key that hashes to another shard: answering it here could create a second
/// order for the same key.
fn check_key_shard(state: &OrdersState, key: Option<&str>) -> Result<(), Problem> {
    let Some(key) = key else { return Ok(()) };
    Ok(state.ownership.check_key("Idempotency-Key", key)?)
}

fn answer(order: &Order, created: bool) -> HttpResponse {
    let status = match (order.is_final(), created) {
        (false, _) => StatusCode::ACCEPTED,
        (true, true) => StatusCode::CREATED,
        (true, false) => StatusCode::OK,
    };
    HttpResponse::build(status)
        .insert_header(("location", format!("/v1/orders/{}", order.id)))
        .json(OrderView::from(order))
}

async fn create(
    state: State,
    req: HttpRequest,
    body: web::Json<NewOrder>,
) -> Result<HttpResponse, Problem> {
    let request = body.into_inner().parse().map_err(Problem::bad_request)?;
    let key = idempotency_key(&req)?;
    check_key_shard(&state, key.as_deref())?;
    let products = InventoryCatalogue {
        client: &state.client,
        shards: &state.shards,
        known: &state.known_products,
    };
    let cards = PaymentsCardVault {
        client: &state.client,
        shards: &state.shards,
    };
    let placed = place_order(
        &state.book,
        &state.runner,
        &products,
        &cards,
        request,
        key,
        state.create_wait,
    )
    .await?;
    Ok(answer(placed.order(), matches!(placed, Placed::Created(_))))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Page {
    limit: Option<usize>,
    after: Option<String>,
}

async fn list(state: State, page: web::Query<Page>) -> Result<HttpResponse, Problem> {
    let limit = page.limit.unwrap_or(100);
    if limit == 0 || limit > MAX_PAGE {
        return Err(Problem::bad_request(format!(
            "limit: expected 1 to {MAX_PAGE}"
        )));
    }
    if let Some(after) = &page.after {
        check_id(after).map_err(|e| Problem::bad_request(format!("after: {e}")))?;
    }
    let (orders, next_after) = state.book.list(page.after.as_deref(), limit)?;
    let orders = orders.iter().map(OrderView::from).collect();
    Ok(HttpResponse::Ok().json(OrderPage { orders, next_after }))
}

async fn get(state: State, id: web::Path<String>) -> Result<HttpResponse, Problem> {
    check_id(&id).map_err(|e| Problem::bad_request(format!("order id: {e}")))?;
    match state.book.get(&id)? {
        Some(order) => Ok(HttpResponse::Ok().json(OrderView::from(&order))),
        None => Err(Problem::not_found(format!("no order `{id}`"))),
    }
}

async fn cancel(state: State, id: web::Path<String>) -> Result<HttpResponse, Problem> {
    check_id(&id).map_err(|e| Problem::bad_request(format!("order id: {e}")))?;
    state.ownership.check_id("order", &id)?;
    let order = cancel_order(&state.book, &state.runner, &id, state.create_wait).await?;
    Ok(answer(&order, false))
}
