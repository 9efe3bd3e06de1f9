//! The guard's refusals: one type for every way a public request is turned away, its
//! problem+json answer, its log line and its count.
//!
//! Guarantees: every refusal is an `application/problem+json` answer whose detail says
//! what to change (a missing scope is named; a key never is, nor is its hash); a 401
//! reads the same whether the key was missing or unknown, with `WWW-Authenticate:
//! Bearer realm="svc"`; a 429 carries `Retry-After` in whole seconds (at least 1) after
//! which a token is there; a 408 closes the connection, whose unread body would
//! otherwise be taken for the next request. Log lines name the key (when known), the
//! route and the reason; `svc_gateway_denied_total{reason}` counts them.

use std::time::Duration;

use actix_web::{
    http::{
        header::{self, HeaderValue},
        ConnectionType, Method, StatusCode,
    },
    HttpResponse, ResponseError,
};
use prometheus::{IntCounterVec, Opts, Registry};

use super::api_keys::AuthFailure;
use super::rate_limit::{Rate, RetryAfter};
use crate::roles::gateway::settings::Scope;
use svc_platform::problem::Problem;

/// Sent with every 401 (RFC 6750).
pub const WWW_AUTHENTICATE: &str = "Bearer realm=\"svc\"";

/// Why the guard refused a request.
#[derive(Debug, Clone, PartialEq)]
pub enum Denial {
    /// 431: the headers add up to more than `gateway.max_header_bytes`.
    HeadersTooLarge { bytes: usize, limit: usize },
    /// 401: no key, or a key no entry has.
    Unauthenticated(AuthFailure),
    /// 403: the key lacks the scope the route needs.
    Forbidden { scope: Scope },
    /// 429: the key's bucket is empty.
    RateLimited { retry_after: RetryAfter, rate: Rate },
    /// 408 when the body was still coming in at `gateway.request_timeout`; 504 when the
    /// request was all there and the answer was late.
    TimedOut {
        body_received: bool,
        limit: Duration,
    },
}

impl Denial {
    /// The `reason` label of the metric and the log.
    pub fn reason(&self) -> &'static str {
        match self {
            Denial::HeadersTooLarge { .. } => "headers_too_large",
            Denial::Unauthenticated(_) => "unauthenticated",
            Denial::Forbidden { .. } => "forbidden",
            Denial::RateLimited { .. } => "rate_limited",
            Denial::TimedOut { .. } => "timeout",
        }
    }

    pub fn problem(&self) -> Problem {
        match self {
            Denial::HeadersTooLarge { bytes, limit } => Problem::new(
                StatusCode::REQUEST_HEADER_FIELDS_TOO_LARGE,
                format!("the request headers are {bytes} bytes (names and values); at most {limit} are accepted"),
            ),
            Denial::Unauthenticated(_) => Problem::new(
                StatusCode::UNAUTHORIZED,
                "a valid API key is required: send `Authorization: Bearer <key>` or `X-Api-Key: <key>`",
            ),
            Denial::Forbidden { scope } => Problem::new(
                StatusCode::FORBIDDEN,
                format!("this API key lacks the scope `{scope}`, which this route needs"),
            ),
            Denial::RateLimited { retry_after, rate } => {
                let mut p = Problem::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    format!(
                        "too many requests with this API key: {} per second, bursts of {}; retry after {} s",
                        rate.per_second,
                        rate.burst,
                        retry_after.whole_seconds()
                    ),
                );
                p.retry_after = Some(Duration::from_secs(retry_after.whole_seconds()));
                p
            }
            Denial::TimedOut { body_received: false, limit } => Problem::new(
                StatusCode::REQUEST_TIMEOUT,
                format!("the request was not received within {}", humantime::format_duration(*limit)),
            ),
            Denial::TimedOut { body_received: true, limit } => Problem::new(
                StatusCode::GATEWAY_TIMEOUT,
                format!("the answer was not ready within {}", humantime::format_duration(*limit)),
            ),
        }
    }

    /// Logs the refusal: who (the key's name, never the key), what, why.
    pub fn log(&self, key: Option<&str>, method: &Method, route: &str) {
        let key = key.unwrap_or("-");
        let reason = self.reason();
        match self {
            Denial::Unauthenticated(failure) => {
                let why = failure.reason();
                tracing::info!(%method, route, reason, why, "API request refused");
            }
            Denial::Forbidden { scope } => {
                let missing = scope.as_str();
                tracing::warn!(key, %method, route, reason, missing, "API request refused");
            }
            _ => tracing::info!(key, %method, route, reason, "API request refused"),
        }
    }
}

impl std::fmt::Display for Denial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.problem().fmt(f)
    }
}

impl ResponseError for Denial {
    fn status_code(&self) -> StatusCode {
        self.problem().status_code()
    }

    fn error_response(&self) -> HttpResponse {
        let mut res = self.problem().error_response();
        match self {
            Denial::Unauthenticated(_) => {
                res.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static(WWW_AUTHENTICATE),
                );
            }
            Denial::TimedOut {
                body_received: false,
                ..
            } => res.head_mut().set_connection_type(ConnectionType::Close),
            _ => {}
        }
        res
    }
}

/// `svc_gateway_denied_total{reason}`.
#[derive(Clone)]
pub struct DeniedCounter(Option<IntCounterVec>);

impl DeniedCounter {
    /// Registers the counter on `registry`; if that fails (registered twice), the guard
    /// works on without it.
    pub fn register(registry: &Registry) -> DeniedCounter {
        let counter = IntCounterVec::new(
            Opts::new(
                "svc_gateway_denied_total",
                "Public API requests the gateway's guard refused, by reason.",
            ),
            &["reason"],
        )
        .expect("static metric definition");
        match registry.register(Box::new(counter.clone())) {
            Ok(()) => DeniedCounter(Some(counter)),
            Err(e) => {
                tracing::warn!(error = %e, "svc_gateway_denied_total is not exported");
                DeniedCounter(None)
            }
        }
    }

    pub fn count(&self, denial: &Denial) {
        if let Some(c) = &self.0 {
            c.with_label_values(&[denial.reason()]).inc();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_carry_the_headers_their_status_needs() {
        let res = Denial::Unauthenticated(AuthFailure::Unknown).error_response();
        assert_eq!(res.status(), 401);
        assert_eq!(
            res.headers().get(header::WWW_AUTHENTICATE).unwrap(),
            WWW_AUTHENTICATE
        );
        assert_eq!(
            res.headers().get(header::CONTENT_TYPE).unwrap(),
            "application/problem+json"
        );
        let missing = Denial::Unauthenticated(AuthFailure::Missing).problem();
        assert_eq!(
            missing,
            Denial::Unauthenticated(AuthFailure::Unknown).problem()
        );

        let limited = Denial::RateLimited {
            retry_after: RetryAfter(Duration::from_millis(1200)),
            rate: Rate {
                per_second: 2.0,
                burst: 3,
            },
        };
        let res = limited.error_response();
        assert_eq!(res.status(), 429);
        assert_eq!(res.headers().get(header::RETRY_AFTER).unwrap(), "2");

        let slow = Denial::TimedOut {
            body_received: false,
            limit: Duration::from_secs(1),
        };
        let res = slow.error_response();
        assert_eq!(res.status(), 408);
        assert_eq!(res.head().connection_type(), ConnectionType::Close);
        let late = Denial::TimedOut {
            body_received: true,
            limit: Duration::from_secs(1),
        };
        assert_eq!(late.error_response().status(), 504);
    }

    #[test]
    fn a_forbidden_answer_names_the_scope() {
        let p = Denial::Forbidden {
            scope: Scope::OrdersWrite,
        }
        .problem();
        assert_eq!(p.status, 403);
        assert!(p.detail.contains("`orders:write`"), "{p}");
    }

    #[test]
    fn the_counter_counts_by_reason() {
        let registry = Registry::new();
        let counter = DeniedCounter::register(&registry);
        counter.count(&Denial::Forbidden {
            scope: Scope::OrdersRead,
        });
        let text = format!("{:?}", registry.gather());
        assert!(text.contains("forbidden"), "{text}");
        // A second registration does not panic; it just does not count.
        DeniedCounter::register(&registry).count(&Denial::Unauthenticated(AuthFailure::Missing));
    }
}
