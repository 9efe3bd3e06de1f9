//! One attempt on the wire: build the request, send it, read the answer, within a budget.
//!
//! Every attempt carries the trace context of the work it is done for (its
//! `traceparent` and the `x-request-id`), and is a [`CallSpan`] in the OTLP export and the time the caller will still wait
//! ([`super::deadline::HEADER`]). The whole exchange (connect, send, headers, body) is
//! bounded by `budget` here, whatever the HTTP library's own timeouts do. Failures are
//! sorted into [`FailureKind`]s, because what may be retried depends on whether the
//! request may have reached the callee.
//!
//! The instance's base URL is parsed once, when the client first meets the instance
//! ([`super::dependency`]); an attempt only sets the call's path and query on a copy
//! of it ([`url_for`]): parsing scheme, host and port again for every attempt was a
//! measurable part of the gateway's hop.

use std::time::Duration;

use super::call::{Call, CallResponse};
use super::deadline;
use super::retry::FailureKind;
use crate::telemetry::otlp::CallSpan;
use crate::trace_context::{self, REQUEST_ID, TRACEPARENT, TRACESTATE};

/// Why an attempt brought no answer.
#[derive(Debug, Clone)]
pub(crate) struct Failure {
    pub(crate) kind: FailureKind,
    pub(crate) detail: String,
}

/// The URL of `path` (with its query, if any) at the instance whose base URL is `base`.
pub(crate) fn url_for(base: &reqwest::Url, path: &str) -> reqwest::Url {
    let (path, query) = match path.split_once('?') {
        Some((path, query)) => (path, Some(query)),
        None => (path, None),
    };
    let mut url = base.clone();
    // The base's own path (normally `/`) is where the call's path goes under.
    let prefix = url.path().trim_end_matches('/');
    if prefix.is_empty() {
        url.set_path(path);
    } else {
        url.set_path(&format!("{prefix}{path}"));
    }
    url.set_query(query);
    url
}

/// Sends `call` to the instance at `base` and waits at most `budget` for the whole answer.
pub(crate) async fn send(
    http: &reqwest::Client,
    base: &reqwest::Url,
    call: &Call<'_>,
    budget: Duration,
) -> Result<CallResponse, Failure> {
    let url = url_for(base, &call.path);
    let mut span = CallSpan::default();
    let mut req = http
        .request(call.method.clone(), url.clone())
        .header(deadline::HEADER, deadline::encode(budget));
    for (name, value) in &call.headers {
        req = req.header(*name, value.as_str());
    }
    if let Some(ctx) = trace_context::current() {
        span = CallSpan::start(&ctx, call.method.as_str(), &url);
        // The caller's own span id is the parent the callee logs (`parent_span_id`); a
        // separate call span would appear in no log, and `svc trace` could not nest the
        // callee under the caller. The callee starts its own span.
        req = req
            .header(TRACEPARENT, ctx.traceparent())
            .header(REQUEST_ID, ctx.request_id.as_str());
        if let Some(state) = ctx.tracestate() {
            req = req.header(TRACESTATE, state);
        }
    }
    if let Some(body) = call.body {
        req = req.json(body);
    }
    let exchange = async {
        let res = req.send().await.map_err(classify)?;
        let status = res.status().as_u16();
        let header = |name: reqwest::header::HeaderName| {
            res.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let content_type = header(reqwest::header::CONTENT_TYPE);
        let location = header(reqwest::header::LOCATION);
        let retry_after = header(reqwest::header::RETRY_AFTER);
        let body = res.bytes().await.map_err(classify)?;
        Ok(CallResponse {
            status,
            content_type,
            location,
            retry_after,
            body,
        })
    };
    let result = match tokio::time::timeout(budget, exchange).await {
        Ok(result) => result,
        Err(_) => Err(Failure {
            kind: FailureKind::TimedOut,
            detail: format!("no answer within {}", humantime::format_duration(budget)),
        }),
    };
    match &result {
        Ok(res) => span.answered(res.status),
        Err(failure) => span.failed(failure.kind.label()),
    }
    result
}

/// Sorts a transport error by whether the request may have reached the callee.
fn classify(e: reqwest::Error) -> Failure {
    let kind = if e.is_connect() {
        if refused(&e) {
            FailureKind::Refused
        } else {
            FailureKind::NotConnected
        }
    } else if e.is_timeout() {
        FailureKind::TimedOut
    } else {
        FailureKind::Broken
    };
    Failure {
        kind,
        detail: error_chain(&e),
    }
}

/// Whether the OS said "connection refused" somewhere down the error's causes.
fn refused(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut cause: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cause {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        cause = err.source();
    }
    false
}

/// The error and its causes on one line: reqwest's own message is often just
/// "error sending request", the useful part is underneath.
fn error_chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(err) = cause {
        let text = err.to_string();
        if !out.contains(&text) {
            out.push_str(": ");
            out.push_str(&text);
        }
        cause = err.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_closed_port_is_refused_and_a_stalled_server_times_out() {
        crate::tls::use_ring_by_default();
        let http = reqwest::Client::new();
        let closed = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = closed.local_addr().unwrap();
        drop(closed);
        let call = Call::get("/x");
        let budget = Duration::from_secs(2);
        let base = reqwest::Url::parse(&format!("http://{addr}")).unwrap();
        let err = send(&http, &base, &call, budget).await.unwrap_err();
        assert_eq!(err.kind, FailureKind::Refused, "{}", err.detail);

        // Accepts connections and never answers.
        let stalled = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = stalled.local_addr().unwrap();
        let hold = tokio::spawn(async move {
            let mut held = Vec::new();
            while let Ok((socket, _)) = stalled.accept().await {
                held.push(socket);
            }
        });
        let started = std::time::Instant::now();
        let base = reqwest::Url::parse(&format!("http://{addr}")).unwrap();
        let err = send(&http, &base, &call, Duration::from_millis(100))
            .await
            .unwrap_err();
        assert_eq!(err.kind, FailureKind::TimedOut, "{}", err.detail);
        assert!(started.elapsed() < Duration::from_secs(1));
        hold.abort();
    }

    #[test]
    fn a_call_path_goes_onto_the_parsed_base_as_the_old_concatenation_did() {
        for (base, path, expected) in [
            (
                "http://127.0.0.1:8081",
                "/v1/products/tea",
                "http://127.0.0.1:8081/v1/products/tea",
            ),
            (
                "https://127.0.0.1:8081/",
                "/v1/notifications?order_id=ord-0-1",
                "https://127.0.0.1:8081/v1/notifications?order_id=ord-0-1",
            ),
            (
                "http://127.0.0.1:8081",
                "/v1/products?limit=2&after=a",
                "http://127.0.0.1:8081/v1/products?limit=2&after=a",
            ),
            (
                "http://10.0.0.7:9000/svc/",
                "/v1/orders/ord-1-x",
                "http://10.0.0.7:9000/svc/v1/orders/ord-1-x",
            ),
            (
                "http://[::1]:9000",
                "/health/ready",
                "http://[::1]:9000/health/ready",
            ),
        ] {
            let parsed = reqwest::Url::parse(base).unwrap();
            let url = url_for(&parsed, path);
            assert_eq!(url.as_str(), expected, "{base} + {path}");
            let concatenated = format!("{}{}", base.trim_end_matches('/'), path);
            assert_eq!(url, reqwest::Url::parse(&concatenated).unwrap());
            // The base itself is left as it was, for the next attempt.
            assert_eq!(parsed, reqwest::Url::parse(base).unwrap());
        }
    }
}
