//! The orders role's HTTP API: thin handlers over the order book and the saga runner.
//!
//! A create is checked completely before anything is written (body, idempotency key,
//! every product known to inventory), then stored `pending` and handed to the saga; the
//! answer waits a short while for the saga to end (201 with the final state) and
//! otherwise says 202 with the pending order and where to poll.
//!
//! An `Idempotency-Key` belongs to one shard (`fnv1a64(key) % shards(orders)`), where
//! the gateway sends it; another shard refuses it with 421 rather than create a second
//! order for the same key.

use std::sync::Arc;
use std::time::Duration;

use actix_web::{http::StatusCode, web, HttpRequest, HttpResponse};
use serde::Deserialize;
use tokio::sync::broadcast::error::RecvError;

use super::book::{BookError, Created, OrderBook};
use super::order::{check_id, NewOrder, Order};
use super::placement::INVENTORY;
use super::saga::SagaRunner;
use svc_platform::client::{self, Call, ServiceClient};
use svc_platform::problem::Problem;
use svc_platform::shards::{ShardCounts, ShardOwnership};
use svc_platform::shutdown::Shutdown;
use svc_platform::trace_context;

const IDEMPOTENCY_KEY: &str = "idempotency-key";
const MAX_PAGE: usize = 1000;

#[derive(Clone)]
pub struct OrdersState {
    pub book: OrderBook,
    pub runner: Arc<SagaRunner>,
    pub client: ServiceClient,
    pub create_wait: Duration,
    /// Triggered when this instance stops: its sagas stop with it (and resume after the
    /// restart), so a create waiting for one answers at once instead of `create_wait`.
    pub shutdown: Shutdown,
    /// The shard this instance owns, which refuses keys and ids of other shards.
    pub ownership: ShardOwnership,
    pub shards: ShardCounts,
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
            BookError::Conflict(m) => Problem::conflict(m),
            BookError::Store(e) => e.into(),
        }
    }
}

/// The order as clients see it: the card number is never echoed, and the stored trace
/// context is internal (the caller has its own `x-request-id`).
fn view(order: &Order) -> serde_json::Value {
    let mut v = serde_json::to_value(order).unwrap_or_default();
    if let Some(map) = v.as_object_mut() {
        map.remove("card");
        map.remove("traceparent");
    }
    v
}

fn idempotency_key(req: &HttpRequest) -> Result<Option<String>, Problem> {
    let Some(value) = req.headers().get(IDEMPOTENCY_KEY) else {
        return Ok(None);
    };
    let key = value
        .to_str()
        .ok()
        .filter(|k| !k.is_empty() && k.len() <= 255 && k.bytes().all(|b| b.is_ascii_graphic()));
    key.map(|k| Some(k.to_string())).ok_or_else(|| {
        Problem::bad_request("Idempotency-Key: expected 1 to 255 printable ASCII characters")
    })
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BookError> + Send + 'static,
) -> Result<T, Problem> {
    web::block(f)
        .await
        .map_err(|e| Problem::internal(e.to_string()))?
        .map_err(Problem::from)
}

/// Refuses a key that hashes to another shard: answering it here could create a second
/// order for the same key.
fn check_key_shard(state: &OrdersState, key: Option<&str>) -> Result<(), Problem> {
    let Some(key) = key else { return Ok(()) };
    Ok(state.ownership.check_key("Idempotency-Key", key)?)
}

/// Every SKU must be known to inventory (on the shard that owns it) before an order is
/// written.
async fn check_products_exist(
    client: &ServiceClient,
    shards: &ShardCounts,
    skus: Vec<String>,
) -> Result<(), Problem> {
    let lookups = skus.iter().map(|sku| {
        let call = Call::get(format!("/v1/products/{sku}")).shard(shards.owner(INVENTORY, sku));
        client.call(INVENTORY, call)
    });
    for (sku, res) in skus.iter().zip(futures::future::join_all(lookups).await) {
        match res {
            Ok(r) if r.is_success() => {}
            Ok(r) if r.status == 404 => {
                return Err(Problem::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    format!("unknown product `{sku}`"),
                ))
            }
            Ok(r) => {
                return Err(Problem::unavailable(
                    format!("inventory could not check `{sku}` ({})", r.status),
                    Duration::from_secs(1),
                ))
            }
            Err(e) => {
                return Err(Problem::unavailable(
                    format!("inventory is not available to check products: {e}"),
                    Duration::from_secs(1),
                ))
            }
        }
    }
    Ok(())
}

/// Waits up to `create_wait` for the saga of `id` to end (less if this instance stops),
/// then reads the order.
async fn settle(state: &OrdersState, id: &str) -> Result<Order, Problem> {
    let mut finished = state.runner.subscribe();
    state.runner.drive(id.to_string());
    // Answer 202 before the caller's deadline rather than make it time out.
    let wait = client::deadline::bounded(state.create_wait);
    let deadline = tokio::time::Instant::now() + wait;
    loop {
        let current = state.book.get(id)?;
        match current {
            Some(o) if o.is_final() => return Ok(o),
            None => return Err(Problem::not_found(format!("no order `{id}`"))),
            Some(o) => {
                let ended = tokio::select! {
                    ended = tokio::time::timeout_at(deadline, finished.recv()) => ended,
                    // Stopping (SIGTERM): the saga runner has stopped, so nothing will end
                    // this saga before the restart; waiting out `create_wait` would only
                    // hold up the drain (and keep this shard away for that long). 202 now.
                    () = state.shutdown.wait() => {
                        return Ok(state.book.get(id)?.unwrap_or(o));
                    }
                };
                match ended {
                    Err(_) => return Ok(o),
                    Ok(Ok(done)) if done != id => continue,
                    Ok(Ok(_)) | Ok(Err(RecvError::Lagged(_))) => continue,
                    Ok(Err(RecvError::Closed)) => return Ok(o),
                }
            }
        }
    }
}

fn answer(order: &Order, created: bool) -> HttpResponse {
    let status = match (order.is_final(), created) {
        (false, _) => StatusCode::ACCEPTED,
        (true, true) => StatusCode::CREATED,
        (true, false) => StatusCode::OK,
    };
    HttpResponse::build(status)
        .insert_header(("location", format!("/v1/orders/{}", order.id)))
        .json(view(order))
}

async fn create(
    state: State,
    req: HttpRequest,
    body: web::Json<NewOrder>,
) -> Result<HttpResponse, Problem> {
    let request = body.into_inner().parse().map_err(Problem::bad_request)?;
    let key = idempotency_key(&req)?;
    check_key_shard(&state, key.as_deref())?;
    // A replay of a known key answers with its order: it writes nothing new.
    let (book, probe, probe_key) = (state.book.clone(), request.clone(), key.clone());
    if let Some(existing) =
        blocking(move || book.order_for_key(&probe, probe_key.as_deref())).await?
    {
        let order = settle(&state, &existing.id).await?;
        return Ok(answer(&order, false));
    }
    let skus: Vec<String> = request.lines.iter().map(|l| l.sku.clone()).collect();
    check_products_exist(&state.client, &state.shards, skus).await?;
    let (order, created) = new_order(state.book.clone(), request, key).await?;
    let order = settle(&state, &order.id).await?;
    Ok(answer(&order, created))
}

async fn new_order(
    book: OrderBook,
    request: super::order::OrderRequest,
    key: Option<String>,
) -> Result<(Order, bool), Problem> {
    let traceparent = trace_context::current().map(|c| c.traceparent());
    match blocking(move || book.create(request, key.as_deref(), traceparent)).await? {
        Created::New(order) => {
            tracing::info!(order_id = %order.id, "order created");
            Ok((order, true))
        }
        Created::Existing(order) => Ok((order, false)),
    }
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
    let orders: Vec<_> = orders.iter().map(view).collect();
    Ok(HttpResponse::Ok().json(serde_json::json!({ "orders": orders, "next_after": next_after })))
}

async fn get(state: State, id: web::Path<String>) -> Result<HttpResponse, Problem> {
    check_id(&id).map_err(|e| Problem::bad_request(format!("order id: {e}")))?;
    match state.book.get(&id)? {
        Some(order) => Ok(HttpResponse::Ok().json(view(&order))),
        None => Err(Problem::not_found(format!("no order `{id}`"))),
    }
}

async fn cancel(state: State, id: web::Path<String>) -> Result<HttpResponse, Problem> {
    let id = id.into_inner();
    check_id(&id).map_err(|e| Problem::bad_request(format!("order id: {e}")))?;
    state.ownership.check_id("order", &id)?;
    let book = state.book.clone();
    let id2 = id.clone();
    blocking(move || book.request_cancel(&id2)).await?;
    let order = settle(&state, &id).await?;
    match order.status {
        super::order::Status::Confirmed => Err(Problem::conflict(format!(
            "order `{id}` was confirmed before the cancellation took effect"
        ))),
        _ => Ok(answer(&order, false)),
    }
}
