//! Forwarding one public request to the role that owns it, and relaying the answer.
//!
//! Status, content type and body are relayed unchanged; `Location` is rewritten from
//! the owner's internal path (`/v1/...`) to the public one (`/api/v1/...`), and
//! `Retry-After` is kept so clients back off as the owner asked. A request about an
//! entity names the owning shard; when no instance of it is known, the answer is 503
//! with `Retry-After`, never a call to another shard.

use actix_web::{http::StatusCode, HttpRequest, HttpResponse};

use svc_platform::client::{Call, CallError, ServiceClient};
use svc_platform::problem::Problem;

/// Public prefix in front of the owners' internal paths.
const PUBLIC_PREFIX: &str = "/api";

/// Where a public request goes.
pub struct Target {
    role: &'static str,
    method: reqwest::Method,
    path: String,
    body: Option<serde_json::Value>,
    pass_headers: Vec<&'static str>,
    shard: Option<u32>,
}

impl Target {
    pub fn get(role: &'static str, path: impl Into<String>) -> Target {
        Target {
            role,
            method: reqwest::Method::GET,
            path: path.into(),
            body: None,
            pass_headers: Vec::new(),
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

    /// Passes this request header on to the owner (e.g. `idempotency-key`).
    pub fn pass_header(mut self, name: &'static str) -> Target {
        self.pass_headers.push(name);
        self
    }
}

pub async fn forward(
    client: &ServiceClient,
    target: Target,
    req: &HttpRequest,
) -> Result<HttpResponse, Problem> {
    let mut call = Call::new(target.method, target.path);
    if let Some(body) = &target.body {
        call = call.json(body);
    }
    if let Some(shard) = target.shard {
        call = call.shard(shard);
    }
    for name in target.pass_headers {
        if let Some(value) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            call = call.header(name, value);
            // The owner deduplicates a request carrying an Idempotency-Key, so the
            // client may repeat it after a timeout or a 5xx; without one, never.
            if name.eq_ignore_ascii_case("idempotency-key") {
                call = call.idempotent();
            }
        }
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
