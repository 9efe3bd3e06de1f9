//! The gateway role: the public API edge (`/api/v1/...`). It holds no business state.
//!
//! Each public route names the role that owns the data and the internal path there; the
//! handler checks the path ids, forwards through the service client (which finds an
//! instance via discovery and passes the trace context on), and relays the owner's
//! answer. A missing or failing owner becomes a 503/504 problem, never a hang.
//!
//! Stateful roles are sharded (docs/ARCHITECTURE.md, "Shards"): a request about an
//! entity goes to the shard that owns it (the shard in an order id; the hash of a SKU
//! or order id for products, payments and notifications), a new order to any live
//! orders shard unless its `Idempotency-Key` decides, and a listing to every shard
//! ([`listing`]).
//!
//! Every route but `openapi.json` is behind the [`guard`]: an API key holding the
//! route's scope, within its rate, with bounded headers and time. The scope of each
//! route is given where it is mounted, in [`start`]. The keys of `api_keys_file` are
//! reloaded when the file changes or on SIGHUP ([`guard::reload`]).

mod forward;
pub mod guard;
mod listing;
pub mod settings;

use std::sync::Arc;

use actix_web::{web, HttpRequest, HttpResponse, Route};

use svc_platform::client::ServiceClient;
use svc_platform::problem::Problem;
use svc_platform::role::{RoleContext, Routes};
use svc_platform::shards::{shard_in_id, ShardCounts};

use crate::domain::IdempotencyKey;
use forward::{forward, Target, IDEMPOTENCY_KEY};
use guard::Guard;
use listing::Listing;
use settings::{GatewaySettings, Scope};
use svc_platform::ids;
use svc_platform::route_table::RouteTable;

use super::RoleEntry;

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../../roles/gateway.yaml"),
    start: |ctx, config| start(ctx, &config.gateway),
};

const OPENAPI: &str = include_str!("openapi.json");

const ORDERS: &str = "orders";
const INVENTORY: &str = "inventory";
const PAYMENTS: &str = "payments";
const NOTIFICATIONS: &str = "notifications";

const PRODUCTS: Listing = Listing {
    role: INVENTORY,
    path: "/v1/products",
    items: "products",
    key: "sku",
};
const ORDER_LIST: Listing = Listing {
    role: ORDERS,
    path: "/v1/orders",
    items: "orders",
    key: "id",
};

/// What every handler shares: the client, and the shard counts that say where an
/// entity lives.
struct Gateway {
    client: ServiceClient,
    shards: ShardCounts,
}

fn start(ctx: &RoleContext, settings: &GatewaySettings) -> anyhow::Result<Routes> {
    let state = web::Data::new(Gateway {
        client: ctx.client.clone(),
        shards: ctx.config.shards.clone(),
    });
    let guard = start_guard(ctx, settings)?;
    Ok(Arc::new(move |cfg| {
        cfg.app_data(state.clone())
            // Public: clients read the API's description before they hold a key.
            .route(OPENAPI_PATH, web::get().to(openapi));
        cfg.service(public_routes(|scope, pattern, route| {
            guard.protect(scope, pattern, route)
        }));
    }))
}

/// Where the API's description is served, without a key.
const OPENAPI_PATH: &str = "/api/v1/openapi.json";

/// Every route under `/api/v1` but [`OPENAPI_PATH`], each with its scope, in one table
/// ([`RouteTable`]); `protect` wraps each route in its guard (the pattern also names
/// the route in refusals). The one list of the public API: the OpenAPI document is
/// checked against it (`openapi_check.rs`).
fn public_routes(protect: impl Fn(Scope, &'static str, Route) -> Route) -> RouteTable {
    use actix_web::http::Method as M;
    use Scope::{OrdersRead, OrdersWrite, ProductsRead, ProductsWrite};
    let mut table = RouteTable::new("/api/v1");
    for (method, pattern, scope, route) in [
        (
            M::GET,
            "/api/v1/products",
            ProductsRead,
            web::to(list_products),
        ),
        (
            M::POST,
            "/api/v1/products",
            ProductsWrite,
            web::to(create_product),
        ),
        (
            M::GET,
            "/api/v1/products/{sku}",
            ProductsRead,
            web::to(get_product),
        ),
        (
            M::POST,
            "/api/v1/products/{sku}/stock",
            ProductsWrite,
            web::to(adjust_stock),
        ),
        (M::GET, "/api/v1/orders", OrdersRead, web::to(list_orders)),
        (
            M::POST,
            "/api/v1/orders",
            OrdersWrite,
            web::to(create_order),
        ),
        (
            M::GET,
            "/api/v1/orders/{id}",
            OrdersRead,
            web::to(get_order),
        ),
        (
            M::POST,
            "/api/v1/orders/{id}/cancel",
            OrdersWrite,
            web::to(cancel_order),
        ),
        (
            M::GET,
            "/api/v1/orders/{id}/payment",
            OrdersRead,
            web::to(order_payment),
        ),
        (
            M::GET,
            "/api/v1/orders/{id}/notifications",
            OrdersRead,
            web::to(order_notifications),
        ),
    ] {
        table = table.route(method, pattern, protect(scope, pattern, route));
    }
    table
}

/// The guard of the `gateway:` section, with the keys of `api_keys_file` read now and
/// again whenever the file changes (checked every `tls.reload_interval`, and on SIGHUP).
fn start_guard(ctx: &RoleContext, settings: &GatewaySettings) -> anyhow::Result<Guard> {
    let seen = guard::reload::stamp(settings);
    let keys = settings.all_keys("config")?;
    let guard = Guard::new(settings, &keys, ctx.metrics.registry())?;
    if guard.key_count() == 0 {
        tracing::warn!(
            "gateway.api_keys and gateway.api_keys_file hold no API key: EVERY /api/v1 request \
             will be refused with 401 (make a key with `svc keys new`)"
        );
    } else {
        let names: Vec<&str> = keys.iter().map(|k| k.name.as_str()).collect();
        tracing::info!(keys = %names.join(","), "public API guarded by {} API keys", names.len());
    }
    guard::reload::spawn(
        guard.clone(),
        settings.clone(),
        seen,
        ctx.config.tls.reload_interval,
        &ctx.reloads,
        ctx.shutdown.clone(),
    );
    Ok(guard)
}

type State = web::Data<Gateway>;
type Body = web::Json<serde_json::Value>;

/// Path ids are passed into internal URLs: only a safe alphabet gets through, never
/// a dot segment (`.`, `..`).
fn id(value: &str) -> Result<&str, Problem> {
    ids::check_id("id", value).map_err(Problem::bad_request)?;
    Ok(value)
}

/// The internal path of `segments` (ids among them already checked by [`id`]), each
/// segment encoded; see [`ids::path`].
fn internal_path(segments: &[&str]) -> Result<String, Problem> {
    ids::path(segments).map_err(Problem::bad_request)
}

/// The `Idempotency-Key` of a request, if it has one; a key that is not 1 to 255
/// visible ASCII characters is refused, never dropped (the create would then go on
/// without it, and every retry would make another order).
fn idempotency_key(req: &HttpRequest) -> Result<Option<IdempotencyKey>, Problem> {
    req.headers()
        .get(IDEMPOTENCY_KEY)
        .map(|value| IdempotencyKey::from_header(value.as_bytes()))
        .transpose()
        .map_err(|e| Problem::bad_request(e.to_string()))
}

/// The orders shard that minted `order`; an id of no shard names no order.
fn order_shard(shards: &ShardCounts, order: &str) -> Result<u32, Problem> {
    shard_in_id(order)
        .filter(|shard| *shard < shards.count(ORDERS))
        .ok_or_else(|| Problem::not_found(format!("no order `{order}`")))
}

async fn openapi() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(OPENAPI)
}

async fn list_products(state: State, req: HttpRequest) -> Result<HttpResponse, Problem> {
    let shards = state.shards.count(INVENTORY);
    listing::gather(&state.client, &PRODUCTS, shards, req.query_string()).await
}

async fn create_product(state: State, body: Body) -> Result<HttpResponse, Problem> {
    // A body without a string SKU goes to any shard, which explains what is wrong.
    let shard = body
        .get("sku")
        .and_then(|s| s.as_str())
        .map(|sku| state.shards.owner(INVENTORY, sku));
    let target = Target::post(INVENTORY, "/v1/products")
        .json(body.into_inner())
        .shard(shard);
    forward(&state.client, target).await
}

async fn get_product(state: State, sku: web::Path<String>) -> Result<HttpResponse, Problem> {
    let sku = id(&sku)?;
    let target = Target::get(INVENTORY, internal_path(&["v1", "products", sku])?)
        .shard(Some(state.shards.owner(INVENTORY, sku)));
    forward(&state.client, target).await
}

async fn adjust_stock(
    state: State,
    sku: web::Path<String>,
    body: Body,
) -> Result<HttpResponse, Problem> {
    let sku = id(&sku)?;
    let target = Target::post(INVENTORY, internal_path(&["v1", "products", sku, "stock"])?)
        .json(body.into_inner())
        .shard(Some(state.shards.owner(INVENTORY, sku)));
    forward(&state.client, target).await
}

async fn list_orders(state: State, req: HttpRequest) -> Result<HttpResponse, Problem> {
    let shards = state.shards.count(ORDERS);
    listing::gather(&state.client, &ORDER_LIST, shards, req.query_string()).await
}

/// A new order goes to any live orders shard; with an `Idempotency-Key`, always to the
/// shard the key hashes to, so a retry finds the order the first attempt created (and
/// gets 503 while that shard is down, never a second order elsewhere).
async fn create_order(state: State, req: HttpRequest, body: Body) -> Result<HttpResponse, Problem> {
    let key = idempotency_key(&req)?;
    let shard = key.as_ref().map(|key| state.shards.owner(ORDERS, key));
    let target = Target::post(ORDERS, "/v1/orders")
        .json(body.into_inner())
        .idempotency_key(key)
        .shard(shard);
    forward(&state.client, target).await
}

async fn get_order(state: State, order: web::Path<String>) -> Result<HttpResponse, Problem> {
    let order = id(&order)?;
    let shard = order_shard(&state.shards, order)?;
    let target = Target::get(ORDERS, internal_path(&["v1", "orders", order])?).shard(Some(shard));
    forward(&state.client, target).await
}

async fn cancel_order(state: State, order: web::Path<String>) -> Result<HttpResponse, Problem> {
    let order = id(&order)?;
    let shard = order_shard(&state.shards, order)?;
    let path = internal_path(&["v1", "orders", order, "cancel"])?;
    let target = Target::post(ORDERS, path).shard(Some(shard));
    forward(&state.client, target).await
}

async fn order_payment(state: State, order: web::Path<String>) -> Result<HttpResponse, Problem> {
    let order = id(&order)?;
    let target = Target::get(PAYMENTS, internal_path(&["v1", "payments", order])?)
        .shard(Some(state.shards.owner(PAYMENTS, order)));
    forward(&state.client, target).await
}

async fn order_notifications(
    state: State,
    order: web::Path<String>,
) -> Result<HttpResponse, Problem> {
    let order = id(&order)?;
    let mut path = internal_path(&["v1", "notifications"])?;
    path.push_str("?order_id=");
    ids::encode_into(&mut path, order);
    let target =
        Target::get(NOTIFICATIONS, path).shard(Some(state.shards.owner(NOTIFICATIONS, order)));
    forward(&state.client, target).await
}

#[cfg(test)]
mod openapi_check;

#[cfg(test)]
mod tests {
    use super::*;

    /// The public API's description, as served at `/api/v1/openapi.json`: OpenAPI 3,
    /// every public route, how to authenticate, and what a refusal of a guarded
    /// operation looks like. (Anyone may read it without a key: tests/it/gateway_guard.rs.)
    #[actix_web::test]
    async fn openapi_document_describes_the_public_api() {
        let res = openapi().await;
        assert_eq!(res.status(), 200);
        let content_type = res.headers().get("content-type").unwrap().to_str().unwrap();
        let content_type = content_type.to_string();
        assert!(
            content_type.starts_with("application/json"),
            "{content_type}"
        );
        let body = actix_web::body::to_bytes(res.into_body()).await.unwrap();
        let doc: serde_json::Value = serde_json::from_slice(&body).expect("JSON");

        let version = doc["openapi"].as_str().unwrap_or_default();
        assert!(version.starts_with("3."), "openapi version {version:?}");
        let paths = doc["paths"].as_object().expect("paths object");
        for path in [
            "/api/v1/orders",
            "/api/v1/orders/{id}",
            "/api/v1/orders/{id}/cancel",
            "/api/v1/products",
            "/api/v1/products/{sku}",
        ] {
            assert!(
                paths.contains_key(path),
                "{path} missing: {:?}",
                paths.keys()
            );
        }
        assert!(
            doc["components"]["securitySchemes"]["bearer"].is_object(),
            "{doc}"
        );
        let create = &doc["paths"]["/api/v1/orders"]["post"];
        for status in ["400", "401", "403", "405", "429"] {
            assert!(
                create["responses"][status].is_object(),
                "POST orders lacks {status}"
            );
        }
        assert_eq!(
            doc["paths"]["/api/v1/openapi.json"]["get"]["security"],
            serde_json::json!([])
        );
    }

    #[test]
    fn an_order_id_routes_to_the_shard_that_minted_it() {
        let shards = ShardCounts::parse_list(&["orders=2".to_string()]).unwrap();
        assert_eq!(order_shard(&shards, "ord-1-01hz").unwrap(), 1);
        assert_eq!(order_shard(&shards, "ord-0-01hz").unwrap(), 0);
        for unknown in ["ord-2-01hz", "nosuchorder", "ord-x-1"] {
            let problem = order_shard(&shards, unknown).unwrap_err();
            assert_eq!(problem.status, 404, "{unknown}");
        }
    }
}
