//! Inbound: a request the access policy let through goes to the application over
//! loopback, and its answer goes back to the caller.
//!
//! By the time [`forward`] runs, the platform has done its part exactly as for a
//! built-in handler: mutual TLS, the manifest's callers (403/404/405), body limits,
//! trace context, the caller's deadline (504 when it passes), metrics and the access
//! log. What the application gets is rebuilt, not copied: method, path, query, body and
//! `content-type`, plus what only the sidecar may say: [`CALLER_ROLE`] (the role of the
//! verified certificate; never the caller's own header of that name), the request's
//! `traceparent` (the span of this request, so the application's work nests under it),
//! `tracestate` and `x-request-id`.

use std::time::{Duration, Instant};

use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use svc_platform::access;
use svc_platform::client::deadline;
use svc_platform::problem::Problem;
use svc_platform::trace_context::{self, REQUEST_ID, TRACEPARENT, TRACESTATE};

/// The verified role of the caller, as the sidecar tells the application.
pub const CALLER_ROLE: &str = "x-svc-caller-role";

/// How a request reaches the application: one per server worker (a connection is
/// driven on the thread that opened it, as with the platform's clients).
pub struct AppLink {
    pub client: reqwest::Client,
    /// `http://127.0.0.1:<port>`, no trailing `/`.
    pub base_url: String,
    /// The limit when the caller sent no deadline (`app.timeout`).
    pub timeout: Duration,
}

/// Why the application gave no answer.
#[derive(Debug, thiserror::Error)]
pub enum AppUnavailable {
    #[error("the application at {url} refused the connection (down?)")]
    Down { url: String },
    #[error("the application did not answer within {0:?}")]
    TimedOut(Duration),
    #[error("the application's answer broke off: {0}")]
    Broken(String),
}

impl From<AppUnavailable> for Problem {
    fn from(e: AppUnavailable) -> Problem {
        let detail = e.to_string();
        match e {
            AppUnavailable::Down { .. } => Problem::unavailable(detail, Duration::from_secs(1)),
            AppUnavailable::TimedOut(_) => Problem::new(StatusCode::GATEWAY_TIMEOUT, detail),
            AppUnavailable::Broken(_) => Problem::new(StatusCode::BAD_GATEWAY, detail),
        }
    }
}

/// The handler of every declared endpoint of the role.
pub async fn forward(
    req: HttpRequest,
    body: web::Bytes,
    app: web::Data<AppLink>,
) -> Result<HttpResponse, Problem> {
    let path = req.uri().path_and_query().map_or("/", |p| p.as_str());
    let url = format!("{}{path}", app.base_url);
    let limit = time_left(Instant::now(), app.timeout, deadline::current());
    let method = reqwest::Method::from_bytes(req.method().as_str().as_bytes())
        .map_err(|_| Problem::bad_request("unsupported method"))?;
    let mut call = app.client.request(method, &url).timeout(limit).body(body);
    if let Some(content_type) = req.headers().get(header::CONTENT_TYPE) {
        call = call.header(header::CONTENT_TYPE.as_str(), content_type.as_bytes());
    }
    if let Some(role) = access::caller(&req).and_then(|peer| peer.role) {
        call = call.header(CALLER_ROLE, role);
    }
    if let Some(ctx) = trace_context::current() {
        call = call
            .header(TRACEPARENT, ctx.traceparent())
            .header(REQUEST_ID, ctx.request_id());
        if let Some(state) = ctx.tracestate() {
            call = call.header(TRACESTATE, state);
        }
    }
    let answer = call
        .send()
        .await
        .map_err(|e| unavailable(&e, &url, limit))?;
    let status = StatusCode::from_u16(answer.status().as_u16())
        .map_err(|_| AppUnavailable::Broken("an invalid status".to_string()))?;
    let content_type = answer.headers().get(header::CONTENT_TYPE.as_str()).cloned();
    let bytes = answer
        .bytes()
        .await
        .map_err(|e| unavailable(&e, &url, limit))?;
    let mut res = HttpResponse::build(status);
    if let Some(content_type) = content_type {
        res.insert_header((header::CONTENT_TYPE, content_type.as_bytes()));
    }
    Ok(res.body(bytes))
}

/// What is left of the caller's deadline, or `timeout` if it sent none (or less).
fn time_left(now: Instant, timeout: Duration, deadline: Option<Instant>) -> Duration {
    deadline.map_or(timeout, |d| d.saturating_duration_since(now).min(timeout))
}

fn unavailable(e: &reqwest::Error, url: &str, limit: Duration) -> Problem {
    let reason = if e.is_timeout() {
        AppUnavailable::TimedOut(limit)
    } else if e.is_connect() {
        AppUnavailable::Down {
            url: url.to_string(),
        }
    } else {
        AppUnavailable::Broken(e.to_string())
    };
    tracing::warn!(error = %reason, "forwarding to the application failed");
    reason.into()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_callers_deadline_bounds_the_wait_for_the_app() {
        let now = Instant::now();
        let timeout = Duration::from_secs(30);
        assert_eq!(time_left(now, timeout, None), timeout);
        let soon = now + Duration::from_millis(200);
        assert_eq!(
            time_left(now, timeout, Some(soon)),
            Duration::from_millis(200)
        );
        assert_eq!(time_left(soon, timeout, Some(now)), Duration::ZERO);
    }

    #[test]
    fn each_failure_has_its_status() {
        let down = AppUnavailable::Down { url: "u".into() };
        use actix_web::ResponseError as _;
        assert_eq!(Problem::from(down).status_code(), 503);
        let late = AppUnavailable::TimedOut(Duration::from_secs(1));
        assert_eq!(Problem::from(late).status_code(), 504);
    }
}
