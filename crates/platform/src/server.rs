//! The HTTP server every role runs: common middleware and the platform's own endpoints.
//!
//! [`observe`] wraps every request: it adopts or starts the W3C trace context, echoes the
//! request id, runs the handler inside a span carrying the trace id (so its log lines do
//! too), and records request count and latency by route pattern. [`configure`] mounts
//! `/health/live`, `/health/ready`, `/metrics` and `/v1/peers`, and makes every extractor
//! failure and unknown route a `problem+json` answer.
//!
//! The access log line of a request goes to [`super::telemetry::SPAN_TARGET`] (it is a
//! [`super::telemetry::UnitOfWork`], like a saga step): failures at
//! warn/info, successes at debug (kept by the log file, so `svc trace` sees every call),
//! and successes of [`quiet`] answers (probes, scrapes, lease renewals, watches: the
//! platform's own chatter, counted in the metrics anyway) at trace.

use std::borrow::Cow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix_web::{
    body::{BoxBody, MessageBody},
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
    web, HttpMessage, HttpRequest, HttpResponse, Responder,
};

use super::client::deadline;
use super::fault;
use super::health_gate::HealthGate;
use super::metrics::Metrics;
use super::peer_view::PeerView;
use super::problem::{self, Problem};
use super::telemetry::{otlp, SpanKind, Verdict};
use super::trace_context::{self, TraceContext, REQUEST_ID, TRACEPARENT, TRACESTATE};
use opentelemetry::Value;

/// Marks an answer as routine plumbing: its success is logged at trace, not debug.
#[derive(Debug, Clone, Copy)]
struct Quiet;

/// Marks `res` as [`Quiet`].
pub fn quiet(mut res: HttpResponse) -> HttpResponse {
    res.extensions_mut().insert(Quiet);
    res
}

/// Whether the instance should receive traffic: set once registered and serving,
/// cleared as the first step of shutdown, and only while its [`HealthGate`] is open.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>, HealthGate);

impl Readiness {
    /// Ready only while `gate` is open, too.
    pub(crate) fn gated(gate: HealthGate) -> Readiness {
        Readiness(Arc::default(), gate)
    }
    pub(crate) fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst) && self.1.is_healthy()
    }
}

/// What the platform endpoints and middleware need, shared by every worker.
#[derive(Clone)]
pub struct PlatformState {
    pub role: String,
    pub instance_id: String,
    pub metrics: Metrics,
    pub readiness: Readiness,
    pub peers: PeerView,
    pub max_body_bytes: usize,
}

/// Mounts the platform endpoints and extractor settings. Call before the role's routes.
pub fn configure(cfg: &mut web::ServiceConfig, state: &PlatformState) {
    configure_extractors(cfg, state);
    cfg.route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics))
        .route("/v1/peers", web::get().to(peers));
}

/// Body limits and `problem+json` answers for extractor failures, without the platform
/// endpoints: what a public listener needs.
pub(crate) fn configure_extractors(cfg: &mut web::ServiceConfig, state: &PlatformState) {
    fault::http_500(); // says so at start-up if the test hook is on
    cfg.app_data(web::Data::new(state.clone()))
        .app_data(
            web::JsonConfig::default()
                .limit(state.max_body_bytes)
                .error_handler(|e, _| problem::from_json_error(e).into()),
        )
        .app_data(web::PayloadConfig::default().limit(state.max_body_bytes))
        .app_data(
            web::QueryConfig::default().error_handler(|e, _| problem::from_query_error(e).into()),
        )
        .app_data(
            web::PathConfig::default().error_handler(|e, _| problem::from_path_error(e).into()),
        );
}

/// The answer for any route no role serves.
pub(crate) async fn not_found(req: HttpRequest) -> Result<HttpResponse, Problem> {
    Err(no_route(req.method(), req.path()))
}

/// The problem [`not_found`] answers: for a role that routes some requests itself
/// (the gateway's route table) and must answer the others the same way.
pub fn no_route(method: &actix_web::http::Method, path: &str) -> Problem {
    Problem::not_found(format!("no route for {method} {path}"))
}

/// The route pattern that served a request, put in the request's extensions by a role
/// that routes requests itself (the gateway's route table); `None`: no route did.
/// [`observe`] labels the request with it rather than asking actix's router, which
/// knows only the table's prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteName(pub Option<&'static str>);

async fn live(state: web::Data<PlatformState>) -> impl Responder {
    quiet(HttpResponse::Ok().json(serde_json::json!({
        "status": "live",
        "role": state.role,
        "instance": state.instance_id,
    })))
}

async fn ready(state: web::Data<PlatformState>) -> Result<HttpResponse, Problem> {
    if state.readiness.is_ready() {
        Ok(quiet(HttpResponse::Ok().json(serde_json::json!({
            "status": "ready",
            "role": state.role,
            "instance": state.instance_id,
        }))))
    } else {
        Err(Problem::unavailable(
            "not ready: starting up, shutting down, or what it depends on is unhealthy",
            std::time::Duration::from_secs(1),
        ))
    }
}

async fn metrics(state: web::Data<PlatformState>) -> impl Responder {
    quiet(
        HttpResponse::Ok()
            .content_type("text/plain; version=0.0.4; charset=utf-8")
            .body(state.metrics.render()),
    )
}

async fn peers(state: web::Data<PlatformState>) -> impl Responder {
    quiet(HttpResponse::Ok().json(state.peers.snapshot()))
}

/// Trace context, request id, span, metrics and an access log line for every request.
pub async fn observe(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let incoming = req
        .headers()
        .get(TRACEPARENT)
        .and_then(|v| v.to_str().ok())
        .and_then(TraceContext::parse_traceparent);
    let mut ctx = match incoming {
        Some(parent) => {
            let mut ctx = parent.child();
            let states = req.headers().get_all(TRACESTATE);
            ctx.tracestate =
                trace_context::parse_tracestate(states.filter_map(|v| v.to_str().ok()));
            ctx
        }
        None => TraceContext::new_root(),
    };
    if let Some(id) = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .and_then(trace_context::sanitize_request_id)
    {
        ctx.request_id = id;
    }
    let state = req.app_data::<web::Data<PlatformState>>().cloned();
    // Kept for the end line: a method and a URI are cheap to clone (shared bytes).
    let method = req.method().clone();
    let uri = req.uri().clone();
    // Fields as plain strings: recorded as they are, not formatted through `Display`.
    let work = crate::unit_of_work!(
        &ctx,
        "request",
        request_id = ctx.request_id.as_str(),
        tracestate = tracing::field::Empty
    );
    // On the request's lines only when the caller sent one.
    if let Some(state) = ctx.tracestate() {
        work.span().record("tracestate", state);
    }
    work.set_kind(SpanKind::Server);
    // Where the caller addressed us, for the export only (nothing is read otherwise).
    let server = otlp::exporting().then(|| server_address(&req));
    let request_id = ctx.request_id.clone();
    let result = work.instrument(handle(req, next, ctx)).await;
    let elapsed = work.elapsed();
    const UNMATCHED: &str = "unmatched";
    let (status, route, quiet) = match &result {
        Ok(res) => {
            let named = res.request().extensions().get::<RouteName>().copied();
            let route: Cow<'static, str> = match named {
                Some(RouteName(name)) => Cow::Borrowed(name.unwrap_or(UNMATCHED)),
                None => res
                    .request()
                    .match_pattern()
                    .map_or(Cow::Borrowed(UNMATCHED), Cow::Owned),
            };
            (
                res.status().as_u16(),
                route,
                res.response().extensions().get::<Quiet>().is_some(),
            )
        }
        Err(e) => (
            e.as_response_error().status_code().as_u16(),
            Cow::Borrowed(UNMATCHED),
            false,
        ),
    };
    if let Some(state) = &state {
        state
            .metrics
            .observe_request(&route, &method, status, elapsed);
    }
    // Successes below info: a terminal stays readable; the log file keeps debug.
    let verdict = Verdict::of_status(status, quiet);
    let path = uri.path();
    work.set_export_attributes(|| {
        let mut attributes = vec![
            (
                "http.request.method",
                Value::from(method.as_str().to_string()),
            ),
            ("url.path", Value::from(path.to_string())),
            ("http.response.status_code", Value::from(i64::from(status))),
        ];
        if route != UNMATCHED {
            attributes.push(("http.route", Value::from(route.to_string())));
        }
        if let Some((host, port)) = server {
            attributes.push(("server.address", Value::from(host)));
            attributes.push(("server.port", Value::from(i64::from(port))));
        }
        attributes
    });
    crate::end_unit_of_work!(
        work,
        verdict,
        "request",
        method = method.as_str(),
        path,
        status
    );
    result.map(|mut res| {
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            res.headers_mut()
                .insert(HeaderName::from_static(REQUEST_ID), v);
        }
        res
    })
}

/// The host and port the request was addressed to (its `Host`), the port the listener
/// is bound to when the `Host` names none.
fn server_address(req: &ServiceRequest) -> (String, u16) {
    let bound = req.app_config().local_addr().port();
    let info = req.connection_info();
    let host = info.host();
    // `host:port`, `[v6]:port`, or a host alone.
    match host.rsplit_once(':') {
        Some((name, port)) if !name.ends_with(':') => match port.parse() {
            Ok(port) => (name.trim_matches(['[', ']']).to_string(), port),
            Err(_) => (host.trim_matches(['[', ']']).to_string(), bound),
        },
        _ => (host.trim_matches(['[', ']']).to_string(), bound),
    }
}

/// Runs the rest of the chain for one request with its trace context and, if the caller
/// sent one, under its deadline ([`deadline::HEADER`]): once it passes, the handler is
/// dropped (its work stops at the next await) and the answer is 504. The caller has
/// given up by then, so finishing would only take capacity from callers still waiting.
/// Calls the handler makes see the deadline through [`deadline::current`].
async fn handle(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
    ctx: TraceContext,
) -> Result<ServiceResponse<BoxBody>, actix_web::Error> {
    use actix_web::ResponseError as _;
    if fault::http_500() && !is_platform_endpoint(req.path()) {
        let problem = Problem::internal(format!("fault injected by {}", fault::HTTP_500_ENV));
        return Ok(req.into_response(problem.error_response()));
    }
    let budget = req
        .headers()
        .get(deadline::HEADER)
        .and_then(|v| v.to_str().ok())
        .and_then(deadline::parse);
    let Some(budget) = budget else {
        return trace_context::scope(ctx, next.call(req))
            .await
            .map(ServiceResponse::map_into_boxed_body);
    };
    let expired = || {
        Problem::new(
            actix_web::http::StatusCode::GATEWAY_TIMEOUT,
            format!(
                "the caller's deadline ({} ms) passed before the answer was ready",
                budget.as_millis()
            ),
        )
    };
    if budget.is_zero() {
        return Ok(req.into_response(expired().error_response()));
    }
    // No clone of the request may be kept across `next.call`: routing needs the only
    // reference. So a late answer is an error, which actix turns into its response.
    let run = deadline::scope(
        Instant::now() + budget,
        trace_context::scope(ctx, next.call(req)),
    );
    match tokio::time::timeout(budget, run).await {
        Ok(result) => result.map(ServiceResponse::map_into_boxed_body),
        Err(_) => Err(expired().into()),
    }
}

fn is_platform_endpoint(path: &str) -> bool {
    matches!(
        path,
        "/health/live" | "/health/ready" | "/metrics" | "/v1/peers"
    )
}
