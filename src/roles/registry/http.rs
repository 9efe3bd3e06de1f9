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

use super::admission::{self, Refusal};
use super::catalog_json::RoleJson;
use super::lease_table;
use super::RegistryState;
use svc_platform::access::caller;
use svc_platform::clock::now_ms;
use svc_platform::problem::Problem;
use svc_platform::registry_api::{LeaseGrant, Registration, INDEX_HEADER};
use svc_platform::route_table::RouteTable;
use svc_platform::server::quiet;

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
        .route("/v1/prometheus/targets", web::get().to(prometheus_targets))
        .route("/ui", web::get().to(super::ui::page));
}

fn grant(state: &RegistryState, index: u64) -> LeaseGrant {
    LeaseGrant {
        lease_ttl_ms: state.settings.lease_ttl.as_millis() as u64,
        renew_interval_ms: state.settings.renew_interval.get().as_millis() as u64,
        index,
    }
}

/// 200 with the lease grant, once the registration is on disk; 403 for another role's
/// or host's registration, 400 for a plain-HTTP address with TLS on, 409 if another
/// host holds the instance id or another live instance the claimed shard, 503 if it
/// could not be written (and was undone).
async fn register(
    req: HttpRequest,
    state: State,
    body: web::Json<Registration>,
) -> Result<HttpResponse, Problem> {
    let reg = body.into_inner();
    lease_table::validate(&reg, &state.known_roles, &state.sharded_roles)
        .map_err(Problem::bad_request)?;
    let caller = caller(&req);
    let claimant = reg.instance_id.clone();
    let refused = |refusal: Refusal| {
        refusal.log(caller.as_ref(), &claimant);
        Problem::from(refusal)
    };
    admission::acting_for(
        caller.as_ref(),
        &reg.role,
        Some(&reg.address),
        "register as",
    )
    .map_err(refused)?;
    admission::secure_address(&reg.address, state.tls_on).map_err(refused)?;
    let applied = state.change(|t| {
        let now = Instant::now();
        if let Err(refusal) = admission::owner_of_id(t, &reg, caller.as_ref(), now) {
            return (Err(refusal), None);
        }
        match t.register(reg, now, now_ms()) {
            Ok(Some(change)) => (Ok(change.index), Some(change)),
            Ok(None) => (Ok(t.index()), None),
            Err(held) => (Err(Refusal::from(held)), None),
        }
    });
    match applied.durable(&state).await.map_err(not_persisted)? {
        Ok(index) => Ok(HttpResponse::Ok().json(grant(&state, index))),
        Err(refusal) => Err(refused(refusal)),
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
    let caller = caller(&req);
    let renewed = {
        let mut inner = state.inner.lock();
        let table = &mut inner.table;
        let address = table.address_of(&role, &id);
        if let Err(refusal) =
            admission::acting_for(caller.as_ref(), &role, address, "renew a lease of")
        {
            refusal.log(caller.as_ref(), &id);
            return Err(refusal.into());
        }
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
    let caller = caller(&req);
    if let Err(refusal) =
        admission::acting_for(caller.as_ref(), &role, address.as_deref(), "deregister")
    {
        refusal.log(caller.as_ref(), &id);
        return Err(refusal.into());
    }
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

/// Prometheus' HTTP service discovery: every registered instance as a scrape target
/// (`prometheus_sd.rs`). Plain reads; Prometheus polls at its `refresh_interval`.
async fn prometheus_targets(state: State) -> HttpResponse {
    let (index, json) = state.read(super::prometheus_sd::targets_json).await;
    quiet(
        HttpResponse::Ok()
            .content_type(ContentType::json())
            .insert_header((INDEX_HEADER, index.to_string()))
            .body(json),
    )
}
