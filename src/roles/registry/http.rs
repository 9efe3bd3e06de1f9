//! The registry's HTTP API under `/v1/`: thin handlers over [`RegistryState`].
//!
//! Writes (register, deregister) change the table in memory at once and answer after
//! the committer has written them; renewals change only lease times and write nothing.
//! Reads with `?index=N` are blocking queries: they wait until the index differs from
//! N (moved on, or reset by a different registry) or `wait` runs out, then answer with
//! the current view and index.

use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::http::header::ContentType;
use actix_web::http::{Method, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use serde::Deserialize;

use super::catalog_json::RoleJson;
use super::lease_table;
use super::RegistryState;
use svc_platform::access::caller;
use svc_platform::clock::now_ms;
use svc_platform::problem::Problem;
use svc_platform::registry_api::{LeaseGrant, Registration, INDEX_HEADER};
use svc_platform::route_table::RouteTable;
use svc_platform::server::quiet;
use svc_platform::tls::identity;

/// The registry's clock on catalog reads, so readers (the `/ui` page, `svc status`) can
/// compute lease ages without trusting their own clock.
const TIME_HEADER: &str = "x-svc-time-ms";

type State = web::Data<Arc<RegistryState>>;

pub fn routes(cfg: &mut web::ServiceConfig, state: Arc<RegistryState>) {
    // Every instance renews every second: its lease and deregistration are matched
    // without a regex (`RouteTable`), after the static path they sit under.
    let leases = RouteTable::new("/v1/instances")
        .route(
            Method::PUT,
            "/v1/instances/{role}/{id}/lease",
            web::to(renew),
        )
        .route(
            Method::DELETE,
            "/v1/instances/{role}/{id}",
            web::to(deregister),
        );
    cfg.app_data(web::Data::new(state))
        .route("/v1/instances", web::post().to(register))
        .service(leases)
        .route("/v1/roles/{role}/instances", web::get().to(list_role))
        .route("/v1/catalog", web::get().to(catalog))
        .route("/ui", web::get().to(super::ui::page));
}

/// An instance acts only for itself: its certificate must name the registration's role
/// and the host of its address (where only the holder of that certificate can serve).
/// So it registers, renews and deregisters its own registrations and no other role's or
/// host's. (No identity: `tls.insecure`.)
fn acting_for(
    req: &HttpRequest,
    role: &str,
    address: Option<&str>,
    what: &str,
) -> Result<(), Problem> {
    let Some(peer) = caller(req) else {
        return Ok(());
    };
    let refuse = |why: String| {
        tracing::warn!(caller = ?peer.role, claimed = %role, address, "refused: {why}");
        Err(Problem::new(StatusCode::FORBIDDEN, why))
    };
    let caller_role = peer.role.as_deref().unwrap_or("-");
    if caller_role != role {
        return refuse(format!(
            "a certificate for role `{caller_role}` cannot {what} role `{role}`"
        ));
    }
    let host = address
        .and_then(|a| reqwest::Url::parse(a).ok())
        .and_then(|u| u.host_str().map(str::to_string));
    match host {
        Some(host) if !identity::names_host(&peer.hosts, &host) => refuse(format!(
            "a certificate for hosts [{}] cannot {what} an instance at `{host}`",
            peer.hosts.join(", ")
        )),
        _ => Ok(()),
    }
}

fn grant(state: &RegistryState, index: u64) -> LeaseGrant {
    LeaseGrant {
        lease_ttl_ms: state.settings.lease_ttl.as_millis() as u64,
        renew_interval_ms: state.settings.renew_interval.get().as_millis() as u64,
        index,
    }
}

/// 200 with the lease grant, once the registration is on disk; 409 if another live
/// instance holds the claimed shard; 503 if it could not be written (and was undone).
async fn register(
    req: HttpRequest,
    state: State,
    body: web::Json<Registration>,
) -> Result<HttpResponse, Problem> {
    let reg = body.into_inner();
    lease_table::validate(&reg, &state.known_roles, &state.sharded_roles)
        .map_err(Problem::bad_request)?;
    acting_for(&req, &reg.role, Some(&reg.address), "register as")?;
    let claimant = reg.instance_id.clone();
    let applied = state.change(|t| match t.register(reg, Instant::now(), now_ms()) {
        Ok(Some(change)) => (Ok(change.index), Some(change)),
        Ok(None) => (Ok(t.index()), None),
        Err(held) => (Err(held), None),
    });
    match applied.durable(&state).await.map_err(not_persisted)? {
        Ok(index) => Ok(HttpResponse::Ok().json(grant(&state, index))),
        Err(held) => {
            tracing::warn!(instance_role = %held.role, shard = held.shard, holder = %held.holder, instance_id = %claimant, "refused a second holder of a shard");
            Err(Problem::conflict(held.to_string()))
        }
    }
}

fn not_persisted(e: super::NotPersisted) -> Problem {
    Problem::new(StatusCode::SERVICE_UNAVAILABLE, e.to_string())
}

/// Renewals touch only lease times, which are not persisted: one lookup under the lock,
/// nothing written. The grant names the latest durable index.
async fn renew(
    req: HttpRequest,
    state: State,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (role, id) = path.into_inner();
    let renewed = {
        let mut inner = state.inner.lock();
        let table = &mut inner.table;
        acting_for(
            &req,
            &role,
            table.address_of(&role, &id),
            "renew a lease of",
        )?;
        table.renew(&role, &id, Instant::now(), now_ms())
    };
    if renewed {
        Ok(quiet(
            HttpResponse::Ok().json(grant(&state, state.durable_index())),
        ))
    } else {
        Err(Problem::not_found(format!(
            "no lease for {role}/{id}: register again"
        )))
    }
}

async fn deregister(
    req: HttpRequest,
    state: State,
    path: web::Path<(String, String)>,
) -> Result<HttpResponse, Problem> {
    let (role, id) = path.into_inner();
    let address = state
        .inner
        .lock()
        .table
        .address_of(&role, &id)
        .map(str::to_string);
    acting_for(&req, &role, address.as_deref(), "deregister")?;
    let applied = state.change(|t| {
        let change = t.deregister(&role, &id);
        // What was removed, as the wire's `Instance`, for the answer.
        let removed = change.as_ref().and_then(|c| {
            let row = c.rows.first()?;
            let lease = row.before.as_ref()?;
            Some(lease.member.to_instance(&row.role, lease.renewed_at_ms))
        });
        (removed, change)
    });
    match applied.durable(&state).await.map_err(not_persisted)? {
        Some(i) => {
            tracing::info!(instance_role = %i.role, instance_id = %i.instance_id, "deregistered");
            Ok(HttpResponse::Ok().json(serde_json::json!({ "deregistered": i })))
        }
        None => Err(Problem::not_found("no such registration")),
    }
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct WatchQuery {
    index: Option<u64>,
    wait: Option<String>,
}

/// Waits for the index to differ from `query.index`, bounded by `wait` and `max_wait`.
async fn wait_for_change(state: &RegistryState, query: &WatchQuery) -> Result<(), Problem> {
    let wait = match &query.wait {
        Some(w) => humantime::parse_duration(w).map_err(|e| {
            Problem::bad_request(format!("wait: `{w}` is not a duration ({e}); e.g. 30s"))
        })?,
        None => Duration::from_secs(30),
    };
    let Some(seen) = query.index else {
        return Ok(());
    };
    let wait = wait.min(state.settings.max_wait.get());
    let mut rx = state.durable.subscribe();
    tokio::select! {
        _ = tokio::time::timeout(wait, rx.wait_for(|current| *current != seen)) => {}
        _ = state.shutdown.wait() => {}
    }
    Ok(())
}

async fn catalog(state: State, query: web::Query<WatchQuery>) -> Result<HttpResponse, Problem> {
    wait_for_change(&state, &query).await?;
    let (index, json) = state.catalog_json().await;
    Ok(quiet(
        HttpResponse::Ok()
            .content_type(ContentType::json())
            .insert_header((INDEX_HEADER, index.to_string()))
            .insert_header((TIME_HEADER, now_ms().to_string()))
            .body(json),
    ))
}

async fn list_role(
    state: State,
    path: web::Path<String>,
    query: web::Query<WatchQuery>,
) -> Result<HttpResponse, Problem> {
    let role = path.into_inner();
    if !state.known_roles.contains(&role) {
        return Err(Problem::not_found(format!(
            "unknown role `{role}`; valid roles: {}",
            state.known_roles.join(", ")
        )));
    }
    wait_for_change(&state, &query).await?;
    let (index, json) = state
        .read(|table| {
            serde_json::to_vec(&RoleJson { table, role: &role }).expect("a role listing serializes")
        })
        .await;
    Ok(quiet(
        HttpResponse::Ok()
            .content_type(ContentType::json())
            .insert_header((INDEX_HEADER, index.to_string()))
            .insert_header((TIME_HEADER, now_ms().to_string()))
            .body(json),
    ))
}
