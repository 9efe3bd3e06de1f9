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
//! 3. For each attempt, three named phases:
//!    - *choose the target* (`choose_target`): [`dependency`] picks an instance (shard
//!      filter, circuit breakers, untried instances first, probes of ejected instances,
//!      then [`balance`]'s power of two choices on outstanding calls × latency),
//!      waiting briefly for a shard's holder that is being restarted;
//!    - *one attempt* (`attempt`): [`transport`] sends it with the trace context and
//!      the remaining deadline, bounded by the attempt's time, and the outcome is
//!      recorded: latency for the balancer, success or failure for the instance's
//!      [`breaker`];
//!    - *the retry decision* ([`retry::decide`], pure): repeat only if safe (never
//!      sent, or idempotent) and worth it, after a jittered backoff, on another
//!      instance when there is one, while the deadline allows and the dependency's
//!      retry [`budget`] has room.
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
mod thread_clients;
mod transport;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use parking_lot::Mutex;

pub use call::{Call, CallError, CallResponse};

use super::config::{ClientPolicies, PlatformConfig};
use super::peer_view::PeerView;
use super::tls::{http_client_builder, TlsMaterial};
use dependency::{Dependency, EndpointKey, InFlight, Pick};
use metrics::ClientMetrics;
use retry::{AfterAttempt, Decision, FailureKind, GiveUp, Outcome};
use thread_clients::ThreadClients;

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
        // Pools per dependency (and per calling thread: [`thread_clients`]), whose
        // handshakes also check that the callee's certificate names `role`: an address
        // that is not an instance of it fails.
        let (tls, callee) = (self.inner.tls.clone(), role.to_string());
        let connect_timeout = CONNECT_TIMEOUT.min(policy.timeout);
        let http = ThreadClients::new(move || {
            http_client_builder(tls.as_ref(), Some(&callee))
                .connect_timeout(connect_timeout)
                .build()
                .unwrap_or_else(|e| {
                    tracing::error!(error = %e, dependency = %callee, "cannot build its HTTP client; using a default one");
                    reqwest::Client::new()
                })
        });
        let d = Arc::new(
            Dependency::new(role, policy, self.inner.metrics.dependency(role), http)
                .https_only(self.inner.tls.is_some()),
        );
        dependencies.insert(role.to_string(), d.clone());
        d
    }

    /// One call: a permit, a deadline, then attempts until [`retry::decide`] gives up.
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
        let inherited = deadline::current();
        let deadline = deadline::effective(started, policy.timeout, inherited);
        // Whether the call ends at its caller's deadline rather than its own timeout.
        let callers_deadline = inherited.is_some_and(|d| d < started + policy.timeout);
        if deadline <= started {
            return Err(CallError::DeadlineExceeded {
                role: role.to_string(),
            });
        }
        dependency.budget.lock().record_call(started);
        let mut tried: Vec<EndpointKey> = Vec::new();
        // The result of the previous attempt, returned if no further attempt can go.
        let mut previous: Option<Result<CallResponse, CallError>> = None;
        let mut attempts = 0;
        // Whether an attempt of this call found nothing listening (see the owner wait).
        let mut refused_here = false;
        loop {
            let target = match self
                .choose_target(dependency, call, &tried, started, deadline, refused_here)
                .await
            {
                Ok(target) => target,
                Err(none) => return previous.unwrap_or(Err(none)),
            };
            let left = deadline.saturating_duration_since(Instant::now());
            if left < Duration::from_millis(1) {
                // The header counts whole milliseconds: nothing useful fits.
                return previous.unwrap_or(Err(CallError::Timeout {
                    role: role.to_string(),
                    instance: None,
                    timeout: policy.timeout,
                }));
            }
            attempts += 1;
            tried.push(target.key().clone());
            let instance = target.instance_id.clone();
            let (outcome, result) =
                attempt(dependency, call, target, left, callers_deadline, attempts).await;
            refused_here |= matches!(outcome, Outcome::Failed(FailureKind::Refused));
            let now = Instant::now();
            let decision = {
                // Read, and for a retry taken, under one lock: no other call takes the
                // last retry in between.
                let mut budget = dependency.budget.lock();
                let facts = AfterAttempt {
                    outcome,
                    idempotent: call.idempotent,
                    attempts,
                    time_left: deadline.saturating_duration_since(now),
                    budget_allows: budget.allows(now),
                };
                let decision = retry::decide(&facts, policy, &mut rand::rng());
                if let Decision::Retry { .. } = decision {
                    let taken = budget.try_withdraw(now);
                    debug_assert!(taken, "the budget allowed it under this lock");
                }
                decision
            };
            let pause = match decision {
                Decision::Retry { after } => after,
                Decision::GiveUp(why) => {
                    match why {
                        GiveUp::NoTimeLeft => dependency.metrics.skipped_deadline.inc(),
                        GiveUp::BudgetSpent => {
                            dependency.metrics.skipped_budget.inc();
                            tracing::debug!(dependency = %role, %instance, "retry budget spent; not retrying");
                        }
                        GiveUp::Final | GiveUp::NoAttemptsLeft => {}
                    }
                    return result;
                }
            };
            dependency.metrics.retries.inc();
            tracing::debug!(dependency = %role, %instance, ?outcome, attempt = attempts, pause = ?pause, "retrying the call");
            previous = Some(result);
            tokio::time::sleep(pause).await;
        }
    }

    /// The instance for the next attempt, or why there is none. A shard that had a
    /// holder a moment ago but has none now, or whose holder just refused this very
    /// call, is usually one being restarted: it deregistered on SIGTERM, or its old
    /// address no longer listens. This waits a little for the new holder, so a rolling
    /// restart is invisible; a dead shard still gets its 503 once the wait is over, and
    /// an instance ejected for failing is not waited for.
    async fn choose_target(
        &self,
        dependency: &Arc<Dependency>,
        call: &Call<'_>,
        tried: &[EndpointKey],
        started: Instant,
        deadline: Instant,
        refused_here: bool,
    ) -> Result<InFlight, CallError> {
        let role = dependency.role.as_str();
        loop {
            let now = Instant::now();
            let view = self.inner.peers.instances(role);
            let pick = dependency.pick(&view, call.shard, tried, now);
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
            return match pick {
                Pick::Chosen(target) => Ok(target),
                Pick::NoInstance => Err(CallError::NoInstance {
                    role: role.to_string(),
                    shard: call.shard,
                }),
                Pick::AllEjected { retry_in } => Err(CallError::Ejected {
                    role: role.to_string(),
                    shard: call.shard,
                    retry_in,
                }),
            };
        }
    }
}

/// One attempt, number `attempts` of the call, on `target` with `left` until the
/// deadline (`callers_deadline`: the deadline is the caller's, not the call's own
/// timeout): sends it, counts a failure, tells the balancer and the breaker, and says
/// what came of it, as an [`Outcome`] and as what the caller would get. An attempt
/// that ran out of the caller's time is judged [`Outcome::CallerOutOfTime`]: no
/// verdict on the instance.
async fn attempt(
    dependency: &Dependency,
    call: &Call<'_>,
    target: InFlight,
    left: Duration,
    callers_deadline: bool,
    attempts: u32,
) -> (Outcome, Result<CallResponse, CallError>) {
    let role = dependency.role.as_str();
    let policy = &dependency.policy;
    let another_may_follow = call.idempotent && attempts < policy.max_attempts.max(1);
    let budget = match policy.attempt_timeout {
        Some(limit) if another_may_follow => limit.min(left),
        _ => left,
    };
    let sent = match &target.base {
        Ok(base) => transport::send(&dependency.http.current(), base, call, budget).await,
        // Sending could not have started: as reqwest's own builder error was sorted.
        Err(detail) => Err(transport::Failure {
            kind: FailureKind::Broken,
            detail: detail.clone(),
        }),
    };
    let outcome = match &sent {
        Ok(res) => Outcome::Answered(res.status),
        Err(failure) => Outcome::Failed(failure.kind),
    };
    // Its time was all the caller had left (not an `attempt_timeout` of its own).
    let outcome = outcome.judged(callers_deadline && budget == left);
    match &sent {
        Err(failure) => dependency.metrics.attempt_failed(failure.kind.label()),
        Ok(res) if res.status >= 500 => dependency.metrics.attempt_failed("status_5xx"),
        Ok(_) => {}
    }
    let instance = target.instance_id.clone();
    target.finish(outcome, Instant::now());
    let result = sent.map_err(|failure| match failure.kind {
        FailureKind::TimedOut => CallError::Timeout {
            role: role.to_string(),
            instance: Some(instance),
            timeout: budget,
        },
        _ => CallError::Unreachable {
            role: role.to_string(),
            instance,
            detail: failure.detail,
        },
    });
    (outcome, result)
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
