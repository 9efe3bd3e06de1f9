//! The service client: `call(role, Call)` is how any instance talks to another role.
//!
//! Every internal call and every call the gateway forwards goes through
//! [`ServiceClient::call`], so each resilience policy lives in exactly one place. The
//! policies are small pieces, each in its own file with its own tests, composed here in
//! one order:
//!
//! 1. [`concurrency`]: a permit from the dependency's limit, or fail fast (`Overloaded`).
//! 2. [`deadline`]: the call's deadline is `min(own timeout, the deadline of the request
//!    being handled)`.
//! 3. For each attempt:
//!    - [`dependency`]: choose an instance (shard filter, circuit breakers, untried
//!      instances first, probes of ejected instances, then [`balance`]'s power of two
//!      choices on outstanding calls × latency);
//!    - [`transport`]: send it with the trace context and the remaining deadline,
//!      bounded by the attempt's time;
//!    - record the outcome: latency for the balancer, success or failure for the
//!      instance's [`breaker`];
//!    - [`retry`]: repeat only if safe (never sent, or idempotent) and worth it, after
//!      a jittered backoff, on another instance when there is one, while the deadline
//!      allows and the dependency's retry [`budget`] has room.
//!
//! What a caller gets: the answer of the last attempt (any status, 5xx included once
//! retries are spent), or a [`CallError`] saying why there is none. The policy of each
//! dependency comes from the `client` section of the config ([`CallPolicy`]);
//! [`metrics`] lists what is measured.

mod balance;
mod breaker;
mod budget;
mod call;
mod concurrency;
pub mod deadline;
mod dependency;
mod metrics;
mod retry;
mod transport;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use parking_lot::Mutex;

pub use call::{shard_of, Call, CallError, CallResponse};

use super::config::{ClientPolicies, PlatformConfig};
use super::peer_view::PeerView;
use super::tls::{http_client_builder, TlsMaterial};
use dependency::{Dependency, EndpointKey, Pick};
use metrics::ClientMetrics;
use retry::Outcome;

/// Longest wait for a TCP (and TLS) connection: one that takes longer goes elsewhere
/// (a connect failure is always safe to retry).
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a call about an entity waits for its shard to get a holder again.
const OWNER_WAIT: Duration = Duration::from_secs(2);
const OWNER_POLL: Duration = Duration::from_millis(25);
/// A shard whose holder was in the view this recently is waited for; one not seen for
/// longer (or never) is answered 503 at once.
const OWNER_RECENT: Duration = Duration::from_secs(30);

#[derive(Clone)]
pub struct ServiceClient {
    inner: Arc<Inner>,
}

struct Inner {
    tls: Option<Arc<TlsMaterial>>,
    peers: PeerView,
    settings: ClientPolicies,
    metrics: ClientMetrics,
    dependencies: Mutex<HashMap<String, Arc<Dependency>>>,
}

impl ServiceClient {
    /// A client resolving roles through `peers`, with the policies of `config`'s
    /// `client` section, measuring into `registry`.
    pub fn new(
        peers: PeerView,
        config: &PlatformConfig,
        registry: &prometheus::Registry,
        tls: Option<&Arc<TlsMaterial>>,
    ) -> anyhow::Result<ServiceClient> {
        if let Some(t) = config.http.call_timeout {
            tracing::warn!(
                call_timeout = %t,
                "http.call_timeout is deprecated: it is used as client.defaults.timeout; move it there"
            );
        }
        let settings = config.client_policies("config")?;
        let metrics = ClientMetrics::new(registry).context("cannot register client metrics")?;
        Ok(ServiceClient {
            inner: Arc::new(Inner {
                tls: tls.cloned(),
                peers,
                settings,
                metrics,
                dependencies: Mutex::new(HashMap::new()),
            }),
        })
    }

    /// Makes `call` on an instance of `role`, with the dependency's policy.
    pub async fn call(&self, role: &str, call: Call<'_>) -> Result<CallResponse, CallError> {
        let dependency = self.dependency(role);
        let mut record = Record {
            dependency: dependency.clone(),
            started: Instant::now(),
            outcome: "cancelled",
        };
        let result = self.call_with(&dependency, &call, record.started).await;
        record.outcome = match &result {
            Ok(res) if res.status >= 500 => "error_status",
            Ok(_) => "ok",
            Err(e) => e.outcome_label(),
        };
        result
    }

    fn dependency(&self, role: &str) -> Arc<Dependency> {
        let mut dependencies = self.inner.dependencies.lock();
        if let Some(d) = dependencies.get(role) {
            return d.clone();
        }
        let policy = self.inner.settings.policy(role);
        // One pool per dependency, whose handshakes also check that the callee's
        // certificate names `role`: an address that is not an instance of it fails.
        let http = http_client_builder(self.inner.tls.as_ref(), Some(role))
            .connect_timeout(CONNECT_TIMEOUT.min(policy.timeout))
            .pool_idle_timeout(Duration::from_secs(30))
            .build()
            .unwrap_or_else(|e| {
                tracing::error!(error = %e, dependency = role, "cannot build its HTTP client; using a default one");
                reqwest::Client::new()
            });
        let d = Arc::new(Dependency::new(
            role,
            policy,
            self.inner.metrics.dependency(role),
            http,
        ));
        dependencies.insert(role.to_string(), d.clone());
        d
    }

    async fn call_with(
        &self,
        dependency: &Arc<Dependency>,
        call: &Call<'_>,
        started: Instant,
    ) -> Result<CallResponse, CallError> {
        let role = dependency.role.as_str();
        let policy = &dependency.policy;
        let _permit = dependency
            .limit
            .try_acquire()
            .ok_or_else(|| CallError::Overloaded {
                role: role.to_string(),
                limit: dependency.limit.max(),
            })?;
        let deadline = deadline::effective(started, policy.timeout, deadline::current());
        if deadline <= started {
            return Err(CallError::DeadlineExceeded {
                role: role.to_string(),
            });
        }
        dependency.budget.lock().record_call(started);
        let max_attempts = policy.max_attempts.max(1);
        let mut tried: Vec<EndpointKey> = Vec::new();
        // The result of the previous attempt, returned if no further attempt can go.
        let mut previous: Option<Result<CallResponse, CallError>> = None;
        let mut attempt = 1;
        // Whether an attempt of this call found nothing listening (see the owner wait).
        let mut refused_here = false;
        loop {
            let now = Instant::now();
            let view = self.inner.peers.instances(role);
            let pick = dependency.pick(&view, call.shard, &tried, now);
            // A shard that had a holder a moment ago but has none now, or whose holder
            // just refused this very call, is usually one being restarted: it
            // deregistered on SIGTERM, or its old address no longer listens. Wait a little for the new holder, so a rolling
            // restart is invisible; a dead shard still gets its 503 once the wait is
            // over, and an instance ejected for failing is not waited for.
            dependency.note_shards(&view, now);
            let owner_may_return = call
                .shard
                .is_some_and(|shard| dependency.shard_seen_recently(shard, now, OWNER_RECENT))
                && now < deadline.min(started + OWNER_WAIT)
                && match &pick {
                    Pick::NoInstance => true,
                    Pick::AllEjected { .. } => refused_here,
                    Pick::Chosen(_) => false,
                };
            if owner_may_return {
                tokio::time::sleep(OWNER_POLL).await;
                continue;
            }
            let target = match pick {
                Pick::Chosen(target) => target,
                Pick::NoInstance => {
                    return previous.unwrap_or(Err(CallError::NoInstance {
                        role: role.to_string(),
                        shard: call.shard,
                    }))
                }
                Pick::AllEjected { retry_in } => {
                    return previous.unwrap_or(Err(CallError::Ejected {
                        role: role.to_string(),
                        shard: call.shard,
                        retry_in,
                    }))
                }
            };
            let left = deadline.saturating_duration_since(now);
            if left < Duration::from_millis(1) {
                // The header counts whole milliseconds: nothing useful fits.
                return previous.unwrap_or(Err(CallError::Timeout {
                    role: role.to_string(),
                    instance: None,
                    timeout: policy.timeout,
                }));
            }
            let another_may_follow = call.idempotent && attempt < max_attempts;
            let budget = match policy.attempt_timeout {
                Some(limit) if another_may_follow => limit.min(left),
                _ => left,
            };
            let sent = transport::send(&dependency.http, &target.address, call, budget).await;
            let outcome = match &sent {
                Ok(res) => Outcome::Answered(res.status),
                Err(failure) => Outcome::Failed(failure.kind),
            };
            refused_here |= matches!(outcome, Outcome::Failed(retry::FailureKind::Refused));
            match &sent {
                Err(failure) => dependency.metrics.attempt_failed(failure.kind.label()),
                Ok(res) if res.status >= 500 => dependency.metrics.attempt_failed("status_5xx"),
                Ok(_) => {}
            }
            let instance = target.instance_id.clone();
            tried.push(target.key().clone());
            target.finish(outcome, Instant::now());
            let result = sent.map_err(|failure| match failure.kind {
                retry::FailureKind::TimedOut => CallError::Timeout {
                    role: role.to_string(),
                    instance: Some(instance.clone()),
                    timeout: budget,
                },
                _ => CallError::Unreachable {
                    role: role.to_string(),
                    instance: instance.clone(),
                    detail: failure.detail,
                },
            });
            if attempt >= max_attempts || !outcome.retryable(call.idempotent) {
                return result;
            }
            // The rules allow a retry; the deadline and the budget must too.
            let pause = retry::backoff(
                policy.backoff.base(),
                policy.backoff.max(),
                attempt,
                &mut rand::rng(),
            );
            let now = Instant::now();
            if now + pause >= deadline {
                dependency.metrics.skipped_deadline.inc();
                return result;
            }
            if !dependency.budget.lock().try_withdraw(now) {
                dependency.metrics.skipped_budget.inc();
                tracing::debug!(dependency = %role, %instance, "retry budget spent; not retrying");
                return result;
            }
            dependency.metrics.retries.inc();
            tracing::debug!(dependency = %role, %instance, ?outcome, attempt, pause = ?pause, "retrying the call");
            previous = Some(result);
            tokio::time::sleep(pause).await;
            attempt += 1;
        }
    }
}

/// Counts one call when it ends, also when its caller drops it half-way (`cancelled`:
/// e.g. the request it served ran out of time).
struct Record {
    dependency: Arc<Dependency>,
    started: Instant,
    outcome: &'static str,
}

impl Drop for Record {
    fn drop(&mut self) {
        let metrics = &self.dependency.metrics;
        metrics
            .duration
            .observe(self.started.elapsed().as_secs_f64());
        metrics.call_ended(self.outcome);
    }
}
