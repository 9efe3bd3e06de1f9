//! What callers hand the client and get back: [`Call`], [`CallResponse`], [`CallError`].
//!
//! A `Call` says what to send and what is safe to do with it (which shard may serve it,
//! whether it may be repeated). A `CallResponse` is any answer, passed through as
//! received (5xx included, once retries are spent). A `CallError` means no usable
//! answer came back, and says why in a way the edge can map to 503 or 504.

use std::time::Duration;

use reqwest::Method;

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no instance of `{role}`{} is known", shard_suffix(*shard))]
    NoInstance { role: String, shard: Option<u32> },
    /// Every candidate instance is ejected by its circuit breaker.
    #[error("every instance of `{role}`{} is failing and ejected; next probe in {}", shard_suffix(*shard), ms(*retry_in))]
    Ejected {
        role: String,
        shard: Option<u32>,
        retry_in: Duration,
    },
    /// This process already has the dependency's `max_concurrency` calls in flight.
    #[error("too many calls in flight to `{role}` (limit {limit})")]
    Overloaded { role: String, limit: usize },
    #[error("`{role}`{} did not answer within {}", instance_suffix(instance.as_deref()), ms(*timeout))]
    Timeout {
        role: String,
        /// The instance of the last attempt.
        instance: Option<String>,
        timeout: Duration,
    },
    /// The request this call serves ran out of time before the call could start.
    #[error("no time left to call `{role}`: the caller's deadline has passed")]
    DeadlineExceeded { role: String },
    #[error("`{role}` instance {instance} cannot be reached: {detail}")]
    Unreachable {
        role: String,
        instance: String,
        detail: String,
    },
}

fn shard_suffix(shard: Option<u32>) -> String {
    shard
        .map(|s| format!(" owning shard {s}"))
        .unwrap_or_default()
}

/// A duration for people, to the millisecond (`1s 250ms`, not `1s 249ms 981us 12ns`).
fn ms(d: Duration) -> humantime::FormattedDuration {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64))
}

fn instance_suffix(instance: Option<&str>) -> String {
    instance
        .map(|i| format!(" instance {i}"))
        .unwrap_or_default()
}

impl CallError {
    /// Whether the call ran out of time (the edge answers 504), as opposed to finding
    /// nobody able to take it (503).
    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            CallError::Timeout { .. } | CallError::DeadlineExceeded { .. }
        )
    }

    /// When trying again may succeed, for a `Retry-After`: the next probe of an
    /// ejected dependency, else a second.
    pub fn retry_after(&self) -> Duration {
        match self {
            CallError::Ejected { retry_in, .. } => {
                // Whole seconds, rounded up, at least one.
                Duration::from_secs(retry_in.as_millis().div_ceil(1000).max(1) as u64)
            }
            _ => Duration::from_secs(1),
        }
    }

    /// The metric label of a call that ended with this error.
    pub(super) fn outcome_label(&self) -> &'static str {
        match self {
            CallError::NoInstance { .. } => "no_instance",
            CallError::Ejected { .. } => "ejected",
            CallError::Overloaded { .. } => "overloaded",
            CallError::Timeout { .. } => "timeout",
            CallError::DeadlineExceeded { .. } => "deadline",
            CallError::Unreachable { .. } => "unreachable",
        }
    }
}

/// A call to make: method, path (with query), optional JSON body, extra headers.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub(crate) method: Method,
    pub(crate) path: String,
    pub(crate) body: Option<&'a serde_json::Value>,
    pub(crate) headers: Vec<(&'static str, String)>,
    /// Only instances owning this shard may serve the call (calls about an entity).
    pub(crate) shard: Option<u32>,
    /// Whether running the call twice has the effect of running it once, so an attempt
    /// that may have reached the callee can be repeated. GET (and HEAD) by default.
    pub(crate) idempotent: bool,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        let idempotent = method == Method::GET || method == Method::HEAD;
        Call {
            method,
            path: path.into(),
            body: None,
            headers: Vec::new(),
            shard: None,
            idempotent,
        }
    }
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
    }
    pub fn put(path: impl Into<String>) -> Self {
        Self::new(Method::PUT, path)
    }
    pub fn json(mut self, body: &'a serde_json::Value) -> Self {
        self.body = Some(body);
        self
    }
    /// Sends the call to the instance owning `shard`.
    pub fn shard(mut self, shard: u32) -> Self {
        self.shard = Some(shard);
        self
    }
    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Self {
        self.headers.push((name, value.into()));
        self
    }
    /// Declares the call safe to repeat (the callee deduplicates it, or it changes
    /// nothing), so timeouts and 5xx answers may be retried. Only say so when true: a
    /// repeated non-idempotent call does its work twice.
    pub fn idempotent(mut self) -> Self {
        self.idempotent = true;
        self
    }
}

/// A response from another role, passed through as received.
#[derive(Debug)]
pub struct CallResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub location: Option<String>,
    pub retry_after: Option<String>,
    pub body: bytes::Bytes,
}

impl CallResponse {
    pub fn is_success(&self) -> bool {
        (200..300).contains(&self.status)
    }

    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }

    /// The `detail` of a problem+json body, or the body as text.
    pub fn problem_detail(&self) -> String {
        serde_json::from_slice::<serde_json::Value>(&self.body)
            .ok()
            .and_then(|v| v.get("detail").and_then(|d| d.as_str()).map(str::to_string))
            .unwrap_or_else(|| String::from_utf8_lossy(&self.body).into_owned())
    }
}

/// The shard an instance owns, from its registration metadata.
pub(crate) fn shard_of(instance: &crate::registry_api::Instance) -> Option<u32> {
    instance.metadata.get("shard").and_then(|s| s.parse().ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn get_is_idempotent_by_default_post_is_not() {
        assert!(Call::get("/x").idempotent);
        assert!(!Call::post("/x").idempotent);
        assert!(Call::post("/x").idempotent().idempotent);
    }

    #[test]
    fn errors_say_timeout_or_unavailable() {
        let t = CallError::Timeout {
            role: "inventory".into(),
            instance: Some("inv-1".into()),
            timeout: Duration::from_millis(1500),
        };
        assert!(t.is_timeout());
        assert_eq!(
            t.to_string(),
            "`inventory` instance inv-1 did not answer within 1s 500ms"
        );
        let e = CallError::Ejected {
            role: "inventory".into(),
            shard: Some(1),
            retry_in: Duration::from_millis(2100),
        };
        assert!(!e.is_timeout());
        assert_eq!(e.retry_after(), Duration::from_secs(3));
        assert!(e.to_string().contains("owning shard 1"), "{e}");
        let o = CallError::Overloaded {
            role: "inventory".into(),
            limit: 4,
        };
        assert_eq!(o.retry_after(), Duration::from_secs(1));
    }
}
