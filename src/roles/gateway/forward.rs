//! Forwarding one public request to the role that owns it, and relaying the answer.
//!
//! Status, content type and body are relayed unchanged; `Location` is rewritten from
//! the owner's internal path (`/v1/...`) to the public one (`/api/v1/...`), and
//! `Retry-After` is kept so clients back off as the owner asked. A request about an
//! entity names the owning shard; when no instance of it is known, the answer is 503
//! with `Retry-After`, never a call to another shard.

use actix_web::{http::StatusCode, HttpResponse};

use crate::domain::IdempotencyKey;
use svc_platform::client::{Call, CallError, ServiceClient};
use svc_platform::problem::Problem;

/// The header a create's idempotency key travels in, to the owner as from the client.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Public prefix in front of the owners' internal paths.
const PUBLIC_PREFIX: &str = "/api";

/// Where a public request goes.
pub struct Target {
    role: &'static str,
    method: reqwest::Method,
    path: String,
    body: Option<serde_json::Value>,
    idempotency_key: Option<IdempotencyKey>,
    shard: Option<u32>,
}

impl Target {
    pub fn get(role: &'static str, path: impl Into<String>) -> Target {
        Target {
            role,
            method: reqwest::Method::GET,
            path: path.into(),
            body: None,
            idempotency_key: None,
            shard: None,
        }
    }

    pub fn post(role: &'static str, path: impl Into<String>) -> Target {
        Target {
            method: reqwest::Method::POST,
            ..Target::get(role, path)
        }
    }

    pub fn json(mut self, body: serde_json::Value) -> Target {
        self.body = Some(body);
        self
    }

    /// Only the instance owning `shard` may answer (a request about an entity).
    pub fn shard(mut self, shard: Option<u32>) -> Target {
        self.shard = shard;
        self
    }

    /// Sends `key` on as the owner's `Idempotency-Key`: the owner deduplicates the
    /// request, so the client may repeat it after a timeout or a 5xx.
    pub fn idempotency_key(mut self, key: Option<IdempotencyKey>) -> Target {
        self.idempotency_key = key;
        self
    }
}

pub async fn forward(client: &ServiceClient, target: Target) -> Result<HttpResponse, Problem> {
    let mut call = Call::new(target.method, target.path);
    if let Some(body) = &target.body {
        call = call.json(body);
    }
    if let Some(shard) = target.shard {
        call = call.shard(shard);
    }
    // Without a key, a create is never repeated once it may have been received.
    if let Some(key) = target.idempotency_key {
        call = call.header(IDEMPOTENCY_KEY, key.as_str()).idempotent();
    }
    let res = client
        .call(target.role, call)
        .await
        .map_err(|e| call_problem(target.role, e))?;
    let status = StatusCode::from_u16(res.status).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = HttpResponse::build(status);
    if let Some(ct) = res.content_type {
        out.insert_header(("content-type", ct));
    }
    if let Some(location) = res.location {
        let public = if location.starts_with("/v1/") {
            format!("{PUBLIC_PREFIX}{location}")
        } else {
            location
        };
        out.insert_header(("location", public));
    }
    if let Some(after) = res.retry_after {
        out.insert_header(("retry-after", after));
    }
    Ok(out.body(res.body))
}

pub fn call_problem(role: &str, e: CallError) -> Problem {
    tracing::warn!(%role, error = %e, "call to owner failed");
    // Out of time: 504. Nobody able to take it (none known, all ejected, too many
    // calls in flight, unreachable): 503 with a Retry-After the client can honour.
    if e.is_timeout() {
        Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("`{role}` did not answer in time"),
        )
    } else {
        let after = e.retry_after();
        Problem::unavailable(format!("`{role}` is not available: {e}"), after)
    }
}
