//! The HTTP server every role runs: common middleware and the platform's own endpoints.
//!
//! [`observe`] wraps every request: it adopts or starts the W3C trace context, echoes the
//! request id, runs the handler inside a span carrying the trace id (so its log lines do
//! too), and records request count and latency by route pattern. [`configure`] mounts
//! `/health/live`, `/health/ready`, `/metrics` and `/v1/peers`, and makes every extractor
//! failure and unknown route a `problem+json` answer.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use actix_web::{
    body::MessageBody,
    dev::{ServiceRequest, ServiceResponse},
    http::header::{HeaderName, HeaderValue},
    middleware::Next,
    web, HttpRequest, HttpResponse, Responder,
};
use tracing::Instrument;

use super::metrics::Metrics;
use super::peer_view::PeerView;
use super::problem::{self, Problem};
use super::trace_context::{self, TraceContext, REQUEST_ID, TRACEPARENT};

/// Whether the instance should receive traffic: set once registered and serving,
/// cleared as the first step of shutdown.
#[derive(Clone, Default)]
pub struct Readiness(Arc<AtomicBool>);

impl Readiness {
    pub fn set(&self, ready: bool) {
        self.0.store(ready, Ordering::SeqCst);
    }
    pub fn is_ready(&self) -> bool {
        self.0.load(Ordering::SeqCst)
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
        )
        .route("/health/live", web::get().to(live))
        .route("/health/ready", web::get().to(ready))
        .route("/metrics", web::get().to(metrics))
        .route("/v1/peers", web::get().to(peers));
}

/// The answer for any route no role serves.
pub async fn not_found(req: HttpRequest) -> Result<HttpResponse, Problem> {
    Err(Problem::not_found(format!(
        "no route for {} {}",
        req.method(),
        req.path()
    )))
}

async fn live(state: web::Data<PlatformState>) -> impl Responder {
    HttpResponse::Ok().json(serde_json::json!({
        "status": "live",
        "role": state.role,
        "instance": state.instance_id,
    }))
}

async fn ready(state: web::Data<PlatformState>) -> Result<HttpResponse, Problem> {
    if state.readiness.is_ready() {
        Ok(HttpResponse::Ok().json(serde_json::json!({
            "status": "ready",
            "role": state.role,
            "instance": state.instance_id,
        })))
    } else {
        Err(Problem::unavailable(
            "not ready: starting up or shutting down",
            std::time::Duration::from_secs(1),
        ))
    }
}

async fn metrics(state: web::Data<PlatformState>) -> impl Responder {
    HttpResponse::Ok()
        .content_type("text/plain; version=0.0.4; charset=utf-8")
        .body(state.metrics.render())
}

async fn peers(state: web::Data<PlatformState>) -> impl Responder {
    HttpResponse::Ok().json(state.peers.snapshot())
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
        Some(parent) => parent.child(),
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
    let method = req.method().to_string();
    let path = req.path().to_string();
    let span = tracing::info_span!(
        "request",
        trace_id = %ctx.trace_id_hex(),
        span_id = %ctx.span_id_hex(),
        request_id = %ctx.request_id,
    );
    let request_id = ctx.request_id.clone();
    let started = Instant::now();
    let result = trace_context::scope(ctx, next.call(req))
        .instrument(span.clone())
        .await;
    let elapsed = started.elapsed();
    let (status, route) = match &result {
        Ok(res) => (
            res.status().as_u16(),
            res.request()
                .match_pattern()
                .unwrap_or_else(|| "unmatched".to_string()),
        ),
        Err(e) => (
            e.as_response_error().status_code().as_u16(),
            "unmatched".to_string(),
        ),
    };
    if let Some(state) = &state {
        state
            .metrics
            .observe_request(&route, &method, status, elapsed);
    }
    // Successes at debug: renewals, watches and probes would otherwise drown the log.
    span.in_scope(|| {
        let ms = (elapsed.as_secs_f64() * 1e6).round() / 1e3;
        if status >= 500 {
            tracing::warn!(%method, %path, status, ms, "request failed");
        } else if status >= 400 {
            tracing::info!(%method, %path, status, ms, "request refused");
        } else {
            tracing::debug!(%method, %path, status, ms, "request");
        }
    });
    result.map(|mut res| {
        if let Ok(v) = HeaderValue::from_str(&request_id) {
            res.headers_mut()
                .insert(HeaderName::from_static(REQUEST_ID), v);
        }
        res
    })
}
