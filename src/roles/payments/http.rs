//! The payments HTTP API under `/v1/`: thin handlers over the domain functions.
//!
//! Each handler parses (path id, body) into checked values, submits one command (or
//! calls one read), and maps the result.
//! Every refusal is a `problem+json` whose status is decided here and nowhere else; a
//! decline is a stored outcome answered as 402 with its reason as the detail.

use std::sync::Arc;

use actix_web::{http::StatusCode, web, HttpResponse};
use serde::Serialize;

use super::card_vault::CardVault;
use super::error::PaymentError;
use super::ledger;
use super::payment::{check_order_id, AuthorizeRequest, Payment};
use super::transitions::{self, Authorized};
use svc_platform::clock::now_ms;
use svc_platform::problem::Problem;
use svc_platform::shards::ShardOwnership;
use svc_platform::store::Store;

/// What every handler shares.
pub struct Payments {
    pub store: Arc<Store>,
    /// Where cards wait, sealed, for their order's authorization.
    pub vault: CardVault,
    /// Authorizations above this amount are declined.
    pub decline_above_minor: u64,
    /// The shard this instance owns: an order's payment lives on the shard its order id
    /// hashes to, and any other shard refuses to write it (a read there finds nothing).
    pub ownership: ShardOwnership,
}

type State = web::Data<Payments>;

pub fn routes(cfg: &mut web::ServiceConfig, state: Arc<Payments>) {
    cfg.app_data(web::Data::from(state))
        .route("/v1/payments", web::get().to(list))
        .route("/v1/payments/{order_id}", web::get().to(get))
        .route("/v1/payments/{order_id}/card", web::put().to(hold_card))
        .route(
            "/v1/payments/{order_id}/authorize",
            web::post().to(authorize),
        )
        .route("/v1/payments/{order_id}/capture", web::post().to(capture))
        .route("/v1/payments/{order_id}/void", web::post().to(void))
        .route("/v1/ledger", web::get().to(ledger));
}

impl From<PaymentError> for Problem {
    fn from(e: PaymentError) -> Self {
        use PaymentError as E;
        match e {
            E::Invalid(m) => Problem::bad_request(m),
            E::UnknownPayment(_) => Problem::not_found(e.to_string()),
            E::Voided(_)
            | E::Declined { .. }
            | E::AlreadyCaptured(_)
            | E::DifferentAmount { .. } => Problem::conflict(e.to_string()),
            E::Inconsistent(_) => {
                tracing::error!(error = %e, "payments state is inconsistent");
                Problem::internal(e.to_string())
            }
            E::Store(e) => e.into(),
        }
    }
}

fn order_id_from(path: web::Path<String>) -> Result<String, Problem> {
    let id = path.into_inner();
    check_order_id(&id)?;
    Ok(id)
}

/// The order id of a call that changes its payment, refused (421) by any shard but the
/// owner: a payment written elsewhere would be found by no one, and could be taken twice.
fn owned_order_id(state: &Payments, path: web::Path<String>) -> Result<String, Problem> {
    let id = order_id_from(path)?;
    state.ownership.check_key("order", &id)?;
    Ok(id)
}

async fn authorize(
    state: State,
    path: web::Path<String>,
    body: web::Json<AuthorizeRequest>,
) -> Result<HttpResponse, Problem> {
    let order_id = owned_order_id(&state, path)?;
    let mut auth = body.into_inner().parse()?;
    let now = now_ms();
    if auth.card_on_file {
        let card = state.vault.card_for(&state.store, &order_id, now)?;
        auth = auth.with_card(card);
    }
    let authorize = transitions::Authorize::new(order_id, &auth, state.decline_above_minor, now);
    let done = state.store.submit(authorize).await?;
    match done {
        Authorized::Created(p) => {
            tracing::info!(order_id = %p.order_id, amount_minor = p.amount_minor, "payment authorized");
            Ok(HttpResponse::Created().json(p))
        }
        Authorized::Existing(p) => Ok(HttpResponse::Ok().json(p)),
        Authorized::Declined(p) => {
            let reason = p.reason.unwrap_or_else(|| "declined".into());
            tracing::info!(order_id = %p.order_id, %reason, "payment declined");
            Err(Problem::new(StatusCode::PAYMENT_REQUIRED, reason))
        }
    }
}

/// The body of `PUT /v1/payments/{order_id}/card`.
#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct CardToHold {
    card: String,
}

/// Holds the card of an order until its payment is decided (see `card_vault`).
async fn hold_card(
    state: State,
    path: web::Path<String>,
    body: web::Json<CardToHold>,
) -> Result<HttpResponse, Problem> {
    let order_id = owned_order_id(&state, path)?;
    let hold = state.vault.hold(&order_id, &body.card, now_ms())?;
    state.store.submit(hold).await?;
    Ok(HttpResponse::NoContent().finish())
}

async fn capture(state: State, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let order_id = owned_order_id(&state, path)?;
    let capture = transitions::Capture {
        order_id,
        now_ms: now_ms(),
    };
    let p = state.store.submit(capture).await?;
    Ok(HttpResponse::Ok().json(p))
}

async fn void(state: State, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let order_id = owned_order_id(&state, path)?;
    let void = transitions::Void {
        order_id,
        now_ms: now_ms(),
    };
    let p = state.store.submit(void).await?;
    Ok(HttpResponse::Ok().json(p))
}

async fn get(state: State, path: web::Path<String>) -> Result<HttpResponse, Problem> {
    let order_id = order_id_from(path)?;
    transitions::get_payment(&state.store, &order_id)?
        .map(|p| HttpResponse::Ok().json(p))
        .ok_or_else(|| PaymentError::UnknownPayment(order_id).into())
}

async fn list(state: State) -> Result<HttpResponse, Problem> {
    /// A typed body keeps each payment's fields in their declared order.
    #[derive(Serialize)]
    struct List {
        payments: Vec<Payment>,
    }
    let payments = transitions::list_payments(&state.store)?;
    Ok(HttpResponse::Ok().json(List { payments }))
}

async fn ledger(state: State) -> Result<HttpResponse, Problem> {
    Ok(HttpResponse::Ok().json(ledger::read(&state.store)?))
}
