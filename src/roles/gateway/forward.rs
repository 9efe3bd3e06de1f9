//! Forwarding one public request to the role that owns it, and relaying the answer.
//!
//! Status, content type and body are relayed unchanged; `Location` is rewritten from
//! the owner's internal path (`/v1/...`) to the public one (`/api/v1/...`), and
//! `Retry-After` is kept so clients back off as the owner asked.

use std::time::Duration;

use actix_web::{http::StatusCode, HttpRequest, HttpResponse};

use crate::platform::client::{Call, CallError, ServiceClient};
use crate::platform::problem::Problem;

/// Public prefix in front of the owners' internal paths.
const PUBLIC_PREFIX: &str = "/api";

/// Where a public request goes.
pub struct Target {
    role: &'static str,
    method: reqwest::Method,
    path: String,
    body: Option<serde_json::Value>,
    pass_headers: Vec<&'static str>,
}

impl Target {
    pub fn get(role: &'static str, path: impl Into<String>) -> Target {
        Target {
            role,
            method: reqwest::Method::GET,
            path: path.into(),
            body: None,
            pass_headers: Vec::new(),
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
    for name in target.pass_headers {
        if let Some(value) = req.headers().get(name).and_then(|v| v.to_str().ok()) {
            call = call.header(name, value);
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

fn call_problem(role: &str, e: CallError) -> Problem {
    tracing::warn!(%role, error = %e, "call to owner failed");
    match e {
        CallError::Timeout { .. } => Problem::new(
            StatusCode::GATEWAY_TIMEOUT,
            format!("`{role}` did not answer in time"),
        ),
        _ => Problem::unavailable(
            format!("`{role}` is not available: {e}"),
            Duration::from_secs(1),
        ),
    }
}
