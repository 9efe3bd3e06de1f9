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
    #[error("no instance of `{role}` is known")]
    NoInstance { role: String },
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

/// A response from another role, passed through as received.
#[derive(Debug)]
pub struct CallResponse {
    pub status: u16,
    pub content_type: Option<String>,
    pub body: bytes::Bytes,
}

impl CallResponse {
    pub fn json<T: serde::de::DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_slice(&self.body)
    }
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

    /// Calls `path` on one instance of `role`. `body`, if any, is sent as JSON.
    pub async fn call(
        &self,
        role: &str,
        method: Method,
        path_and_query: &str,
        body: Option<&serde_json::Value>,
    ) -> Result<CallResponse, CallError> {
        let instances = self.peers.instances(role);
        if instances.is_empty() {
            return Err(CallError::NoInstance {
                role: role.to_string(),
            });
        }
        let pick = self.next.fetch_add(1, Ordering::Relaxed) % instances.len();
        let target = &instances[pick];
        let url = format!("{}{}", target.address.trim_end_matches('/'), path_and_query);
        let mut req = self.http.request(method, &url).timeout(self.timeout);
        if let Some(ctx) = trace_context::current() {
            req = req
                .header(TRACEPARENT, ctx.child().traceparent())
                .header(REQUEST_ID, ctx.request_id.as_str());
        }
        if let Some(body) = body {
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
        let content_type = res
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let body = res.bytes().await.map_err(fail)?;
        Ok(CallResponse {
            status,
            content_type,
            body,
        })
    }
}
