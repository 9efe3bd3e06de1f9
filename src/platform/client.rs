//! The service client: `call(role, ...)` is how any instance talks to another role.
//!
//! It resolves the role through the local [`PeerView`], spreads calls over the role's
//! instances, bounds every call by a timeout, and sends the current trace context
//! (`traceparent`, `x-request-id`) so one trace follows the request across services.
//! Every internal call goes through here, so resilience policies are added in one place.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::Method;

use super::peer_view::PeerView;
use super::trace_context::{self, REQUEST_ID, TRACEPARENT};

#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("no instance of `{role}`{} is known", shard.map(|s| format!(" owning shard {s}")).unwrap_or_default())]
    NoInstance { role: String, shard: Option<u32> },
    #[error("`{role}` instance {instance} did not answer within {timeout:?}")]
    Timeout {
        role: String,
        instance: String,
        timeout: Duration,
    },
    #[error("`{role}` instance {instance} cannot be reached: {detail}")]
    Unreachable {
        role: String,
        instance: String,
        detail: String,
    },
}

/// A call to make: method, path (with query), optional JSON body, extra headers.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    pub method: Method,
    pub path: String,
    pub body: Option<&'a serde_json::Value>,
    pub headers: Vec<(&'static str, String)>,
    /// Only instances owning this shard may serve the call (calls about an entity).
    pub shard: Option<u32>,
}

impl<'a> Call<'a> {
    pub fn new(method: Method, path: impl Into<String>) -> Self {
        Call {
            method,
            path: path.into(),
            body: None,
            headers: Vec::new(),
            shard: None,
        }
    }
    pub fn get(path: impl Into<String>) -> Self {
        Self::new(Method::GET, path)
    }
    pub fn post(path: impl Into<String>) -> Self {
        Self::new(Method::POST, path)
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
pub fn shard_of(instance: &super::registry_api::Instance) -> Option<u32> {
    instance.metadata.get("shard").and_then(|s| s.parse().ok())
}

#[derive(Clone)]
pub struct ServiceClient {
    http: reqwest::Client,
    peers: PeerView,
    next: Arc<AtomicUsize>,
    timeout: Duration,
}

impl ServiceClient {
    pub fn new(peers: PeerView, timeout: Duration) -> ServiceClient {
        let http = reqwest::Client::builder()
            .connect_timeout(timeout.min(Duration::from_secs(2)))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .expect("a client without custom TLS roots always builds");
        ServiceClient {
            http,
            peers,
            next: Arc::new(AtomicUsize::new(0)),
            timeout,
        }
    }

    /// Makes `call` on one instance of `role`.
    pub async fn call(&self, role: &str, call: Call<'_>) -> Result<CallResponse, CallError> {
        let mut instances = self.peers.instances(role);
        if let Some(shard) = call.shard {
            instances.retain(|i| shard_of(i) == Some(shard));
        }
        if instances.is_empty() {
            return Err(CallError::NoInstance {
                role: role.to_string(),
                shard: call.shard,
            });
        }
        let pick = self.next.fetch_add(1, Ordering::Relaxed) % instances.len();
        let target = &instances[pick];
        let url = format!("{}{}", target.address.trim_end_matches('/'), call.path);
        let mut req = self.http.request(call.method, &url).timeout(self.timeout);
        for (name, value) in call.headers {
            req = req.header(name, value);
        }
        if let Some(ctx) = trace_context::current() {
            req = req
                .header(TRACEPARENT, ctx.child().traceparent())
                .header(REQUEST_ID, ctx.request_id.as_str());
        }
        if let Some(body) = call.body {
            req = req.json(body);
        }
        let fail = |e: reqwest::Error| {
            if e.is_timeout() {
                CallError::Timeout {
                    role: role.to_string(),
                    instance: target.instance_id.clone(),
                    timeout: self.timeout,
                }
            } else {
                CallError::Unreachable {
                    role: role.to_string(),
                    instance: target.instance_id.clone(),
                    detail: e.to_string(),
                }
            }
        };
        let res = req.send().await.map_err(fail)?;
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
        let body = res.bytes().await.map_err(fail)?;
        Ok(CallResponse {
            status,
            content_type,
            location,
            retry_after,
            body,
        })
    }
}
