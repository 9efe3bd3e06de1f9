//! One dependency (a role this instance calls): its policy and its per-instance state.
//!
//! Per instance of the role, keyed by instance id and address, the client keeps a
//! [`Load`] (for balancing) and a [`Breaker`] (for ejection). Entries are created the
//! first time an instance is a candidate and dropped as soon as it leaves the peer
//! view, so a restarted instance (new address) starts with a clean slate and a dead
//! one leaves no state or metric series behind.
//!
//! [`Dependency::pick`] is the balancer's front door: shard filter → breaker admission
//! → prefer instances this call has not tried yet → an ejected instance due for its
//! probe goes first (so it is probed as soon as its backoff ends) → otherwise power of
//! two choices. It hands back an [`InFlight`] guard: finishing it records the outcome;
//! dropping it unfinished (the caller gave up) still decrements the load and frees a
//! probe slot. Every breaker transition is logged here (warn when an instance is
//! ejected, info when it is probed and when it is back) and counted in the metrics.

use std::collections::hash_map::Entry;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rand::Rng;

use super::balance::{self, Load};
use super::breaker::{Admission, Breaker, BreakerPolicy, OpenCause, State, Transition};
use super::budget::RetryBudget;
use super::call::shard_of;
use super::concurrency::ConcurrencyLimit;
use super::metrics::DependencyMetrics;
use super::retry::Outcome;
use super::thread_clients::ThreadClients;
use crate::config::CallPolicy;
use crate::registry_api::Instance;

/// Which instance: the id alone is not enough, a restarted instance may come back at
/// another address and must not inherit the old one's record.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct EndpointKey {
    instance_id: String,
    address: String,
}

impl EndpointKey {
    fn of(instance: &Instance) -> EndpointKey {
        EndpointKey {
            instance_id: instance.instance_id.clone(),
            address: instance.address.clone(),
        }
    }
}

struct Endpoint {
    load: Load,
    breaker: Breaker,
    /// The instance's address, parsed once (an address that does not parse fails each
    /// attempt on it, as sending to it would).
    base: Result<reqwest::Url, String>,
}

/// The per-instance state, and the view it was last checked against: a view is
/// replaced whole when the catalog changes, so while the same one comes back nobody
/// can have left and the check is skipped.
#[derive(Default)]
struct Endpoints {
    by_key: HashMap<EndpointKey, Endpoint>,
    checked: Option<Arc<[Instance]>>,
}

pub(crate) struct Dependency {
    pub(crate) role: String,
    /// Connections to this role's instances (mutual TLS, checking the callee's role),
    /// one pool per calling thread.
    pub(crate) http: ThreadClients,
    pub(crate) policy: CallPolicy,
    pub(crate) limit: ConcurrencyLimit,
    pub(crate) budget: Mutex<RetryBudget>,
    pub(crate) metrics: DependencyMetrics,
    breaker_policy: BreakerPolicy,
    endpoints: Mutex<Endpoints>,
    /// When each shard last had a holder in the view: a shard that had one a moment
    /// ago is probably restarting, one never seen is simply not there.
    shards_seen: Mutex<HashMap<u32, Instant>>,
    /// Mutual TLS is on: an instance whose address is not `https` is no candidate.
    https_only: bool,
}

/// What [`Dependency::pick`] found.
pub(crate) enum Pick {
    Chosen(InFlight),
    /// No instance of the role (owning the shard) is in the view.
    NoInstance,
    /// Every candidate is ejected; the earliest probe is due in `retry_in`.
    AllEjected {
        retry_in: Duration,
    },
}

impl Dependency {
    pub(crate) fn new(
        role: &str,
        policy: CallPolicy,
        metrics: DependencyMetrics,
        http: ThreadClients,
    ) -> Dependency {
        let now = Instant::now();
        Dependency {
            role: role.to_string(),
            http,
            limit: ConcurrencyLimit::new(policy.max_concurrency, metrics.in_flight.clone()),
            budget: Mutex::new(RetryBudget::new(
                policy.retry_budget_ratio,
                policy.retry_budget_floor_per_s,
                now,
            )),
            breaker_policy: BreakerPolicy {
                failures_to_open: policy.eject_after_failures,
                ejection: policy.eject,
            },
            policy,
            metrics,
            endpoints: Mutex::new(Endpoints::default()),
            shards_seen: Mutex::new(HashMap::new()),
            https_only: false,
        }
    }

    /// Only `https` instances are candidates (with mutual TLS: a plain-HTTP address in
    /// the view would be called in clear text, and the client refuses to anyway).
    pub(crate) fn https_only(mut self, https_only: bool) -> Dependency {
        self.https_only = https_only;
        self
    }

    /// Notes which shards have a holder in `view` (as of `now`).
    pub(crate) fn note_shards(&self, view: &[Instance], now: Instant) {
        let mut seen = self.shards_seen.lock();
        for shard in view.iter().filter_map(shard_of) {
            seen.insert(shard, now);
        }
    }

    /// Whether `shard` had a holder within `window` before `now`.
    pub(crate) fn shard_seen_recently(&self, shard: u32, now: Instant, window: Duration) -> bool {
        self.shards_seen
            .lock()
            .get(&shard)
            .is_some_and(|at| now.saturating_duration_since(*at) <= window)
    }

    /// Chooses the instance for one attempt among `view` (every instance of the role).
    pub(crate) fn pick(
        self: &Arc<Self>,
        view: &Arc<[Instance]>,
        shard: Option<u32>,
        tried: &[EndpointKey],
        now: Instant,
    ) -> Pick {
        let mut transition = None;
        let mut guard = self.endpoints.lock();
        let state = &mut *guard;
        if !state.checked.as_ref().is_some_and(|c| Arc::ptr_eq(c, view)) {
            self.forget_departed(&mut state.by_key, view);
            state.checked = Some(view.clone());
        }
        let endpoints = &mut state.by_key;
        let candidates: Vec<&Instance> = view
            .iter()
            .filter(|i| shard.is_none() || shard_of(i) == shard)
            .filter(|i| !self.https_only || i.address.starts_with("https://"))
            .collect();
        if candidates.is_empty() {
            return Pick::NoInstance;
        }
        let initial = typical_latency(endpoints, now);
        for instance in &candidates {
            if let Entry::Vacant(slot) = endpoints.entry(EndpointKey::of(instance)) {
                slot.insert(Endpoint {
                    load: Load::new(initial, now),
                    breaker: Breaker::new(self.breaker_policy),
                    base: reqwest::Url::parse(&instance.address)
                        .map_err(|e| format!("invalid address `{}`: {e}", instance.address)),
                });
                self.metrics
                    .breaker_state(&instance.instance_id, State::Closed as i64);
            }
        }
        // (key, instance, admission) of every candidate the breakers let through.
        let admitted: Vec<(EndpointKey, &Instance, Admission)> = candidates
            .iter()
            .filter_map(|i| {
                let key = EndpointKey::of(i);
                let admission = endpoints.get(&key)?.breaker.admission(now);
                (admission != Admission::No).then_some((key, *i, admission))
            })
            .collect();
        if admitted.is_empty() {
            let retry_in = candidates
                .iter()
                .filter_map(|i| endpoints.get(&EndpointKey::of(i))?.breaker.probe_in(now))
                .min()
                .unwrap_or(Duration::ZERO);
            return Pick::AllEjected { retry_in };
        }
        // A retry goes to an instance this call has not tried, when there is one.
        let fresh: Vec<_> = admitted
            .iter()
            .filter(|(key, _, _)| !tried.contains(key))
            .collect();
        let pool: Vec<_> = if fresh.is_empty() {
            admitted.iter().collect()
        } else {
            fresh
        };
        let mut rng = rand::rng();
        let probes: Vec<_> = pool
            .iter()
            .filter(|(_, _, a)| *a == Admission::Probe)
            .collect();
        let (key, instance, admission) = if probes.is_empty() {
            let costs: Vec<f64> = pool
                .iter()
                .map(|(key, _, _)| endpoints.get(key).map_or(0.0, |e| e.load.cost(now)))
                .collect();
            let i = balance::p2c(&costs, &mut rng).unwrap_or(0);
            pool[i]
        } else {
            probes[rng.random_range(0..probes.len())]
        };
        let probe = *admission == Admission::Probe;
        let mut base = Err(String::new());
        if let Some(endpoint) = endpoints.get_mut(key) {
            base = endpoint.base.clone();
            endpoint.load.start();
            if probe {
                transition = endpoint
                    .breaker
                    .start_probe(now)
                    .map(|t| (t, endpoint.breaker.state()));
            }
        }
        let chosen = InFlight {
            dependency: self.clone(),
            key: key.clone(),
            instance_id: instance.instance_id.clone(),
            address: instance.address.clone(),
            base,
            probe,
            started: now,
            finished: false,
        };
        drop(guard);
        if let Some((t, state)) = transition {
            self.report(&chosen.instance_id, &chosen.address, t, state);
        }
        Pick::Chosen(chosen)
    }

    /// Drops the state of instances no longer in the view.
    fn forget_departed(&self, endpoints: &mut HashMap<EndpointKey, Endpoint>, view: &[Instance]) {
        if endpoints.len() == view.len()
            && view
                .iter()
                .all(|i| endpoints.contains_key(&EndpointKey::of(i)))
        {
            return;
        }
        let departed: Vec<EndpointKey> = endpoints
            .keys()
            .filter(|k| {
                !view
                    .iter()
                    .any(|i| i.instance_id == k.instance_id && i.address == k.address)
            })
            .cloned()
            .collect();
        for key in departed {
            endpoints.remove(&key);
            // The gauge is per instance id: keep it if the id lives on at a new address.
            if !endpoints.keys().any(|k| k.instance_id == key.instance_id) {
                self.metrics.forget_instance(&key.instance_id);
            }
            tracing::debug!(dependency = %self.role, instance = %key.instance_id, address = %key.address, "instance left the view; its client state is dropped");
        }
    }

    fn finish(&self, flight: &InFlight, outcome: Option<Outcome>, now: Instant) {
        let mut transition = None;
        {
            let mut endpoints = self.endpoints.lock();
            let Some(endpoint) = endpoints.by_key.get_mut(&flight.key) else {
                return; // left the view meanwhile
            };
            endpoint.load.end();
            match outcome {
                Some(outcome) => {
                    if outcome.is_answer() {
                        endpoint
                            .load
                            .observe(now.saturating_duration_since(flight.started), now);
                    }
                    match outcome.breaker_signal() {
                        Some(signal) => {
                            transition = endpoint
                                .breaker
                                .record(signal, flight.probe, now)
                                .map(|t| (t, endpoint.breaker.state()));
                        }
                        // No verdict (the caller's deadline ended it): as if the
                        // caller had given up.
                        None if flight.probe => endpoint.breaker.abandon_probe(),
                        None => {}
                    }
                }
                None if flight.probe => endpoint.breaker.abandon_probe(),
                None => {}
            }
        }
        if let Some((t, state)) = transition {
            self.report(&flight.instance_id, &flight.address, t, state);
        }
    }

    fn report(&self, instance: &str, address: &str, transition: Transition, state: State) {
        let role = &self.role;
        self.metrics.breaker_state(instance, state as i64);
        match transition {
            Transition::Opened { cause, backoff } => {
                self.metrics.ejections.inc();
                let probe_in = humantime::format_duration(backoff).to_string();
                match cause {
                    OpenCause::ConsecutiveFailures(n) => {
                        tracing::warn!(dependency = %role, %instance, %address, failures = n, %probe_in, "circuit opened: instance ejected after consecutive failures")
                    }
                    OpenCause::Refused => {
                        tracing::warn!(dependency = %role, %instance, %address, %probe_in, "circuit opened: instance ejected, connection refused")
                    }
                    OpenCause::ProbeFailed => {
                        tracing::warn!(dependency = %role, %instance, %address, %probe_in, "circuit opened again: probe failed, instance stays ejected")
                    }
                }
            }
            Transition::HalfOpened => {
                tracing::info!(dependency = %role, %instance, %address, "circuit half-open: probing ejected instance");
            }
            Transition::Closed => {
                tracing::info!(dependency = %role, %instance, %address, "circuit closed: probe succeeded, instance back in");
            }
        }
    }
}

/// The latency a newly seen instance is assumed to have: the mean of the ones known,
/// so it competes on equal terms instead of being favoured or starved.
fn typical_latency(endpoints: &HashMap<EndpointKey, Endpoint>, now: Instant) -> Duration {
    if endpoints.is_empty() {
        return balance::DEFAULT_LATENCY;
    }
    let sum: f64 = endpoints.values().map(|e| e.load.latency_at(now)).sum();
    Duration::from_secs_f64(sum / endpoints.len() as f64)
}

/// One attempt on a chosen instance. Finish it with the outcome; dropping it
/// unfinished counts as "the caller gave up" (no verdict for the breaker).
pub(crate) struct InFlight {
    dependency: Arc<Dependency>,
    key: EndpointKey,
    pub(crate) instance_id: String,
    pub(crate) address: String,
    /// The parsed [`Self::address`], or why it does not parse.
    pub(crate) base: Result<reqwest::Url, String>,
    probe: bool,
    started: Instant,
    finished: bool,
}

impl InFlight {
    pub(crate) fn key(&self) -> &EndpointKey {
        &self.key
    }

    pub(crate) fn finish(mut self, outcome: Outcome, now: Instant) {
        self.finished = true;
        let dependency = self.dependency.clone();
        dependency.finish(&self, Some(outcome), now);
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if !self.finished {
            let dependency = self.dependency.clone();
            dependency.finish(self, None, Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backoff::Backoff;
    use crate::client::metrics::ClientMetrics;
    use crate::client::retry::FailureKind;

    fn instance(id: &str, port: u16, shard: u32) -> Instance {
        Instance {
            role: "inventory".into(),
            instance_id: id.into(),
            address: format!("http://127.0.0.1:{port}"),
            version: "0".into(),
            metadata: [("shard".to_string(), shard.to_string())].into(),
            registered_at_ms: 0,
            renewed_at_ms: 0,
        }
    }

    fn dependency(policy: CallPolicy) -> (Arc<Dependency>, prometheus::Registry) {
        let registry = prometheus::Registry::new();
        let metrics = ClientMetrics::new(&registry)
            .unwrap()
            .dependency("inventory");
        (
            Arc::new(Dependency::new(
                "inventory",
                policy,
                metrics,
                ThreadClients::new(|| {
                    crate::tls::use_ring_by_default();
                    reqwest::Client::new()
                }),
            )),
            registry,
        )
    }

    fn chosen(pick: Pick) -> InFlight {
        match pick {
            Pick::Chosen(f) => f,
            Pick::NoInstance => panic!("no instance"),
            Pick::AllEjected { retry_in } => panic!("all ejected, probe in {retry_in:?}"),
        }
    }

    #[test]
    fn shard_filter_and_no_instance() {
        let (dep, _) = dependency(CallPolicy::default());
        let view: Arc<[Instance]> = Arc::from(vec![instance("a", 1, 0), instance("b", 2, 1)]);
        let now = Instant::now();
        let f = chosen(dep.pick(&view, Some(1), &[], now));
        assert_eq!(f.instance_id, "b");
        assert!(matches!(
            dep.pick(&view, Some(7), &[], now),
            Pick::NoInstance
        ));
        assert!(matches!(
            dep.pick(&Arc::from(Vec::new()), None, &[], now),
            Pick::NoInstance
        ));
    }

    #[test]
    fn with_tls_a_plain_http_instance_is_no_candidate() {
        let (dep, _) = dependency(CallPolicy::default());
        let dep = Arc::new(Arc::into_inner(dep).unwrap().https_only(true));
        let mut secure = instance("b", 2, 0);
        secure.address = secure.address.replace("http://", "https://");
        let now = Instant::now();
        let plain: Arc<[Instance]> = Arc::from(vec![instance("a", 1, 0)]);
        assert!(matches!(dep.pick(&plain, None, &[], now), Pick::NoInstance));
        let both: Arc<[Instance]> = Arc::from(vec![instance("a", 1, 0), secure]);
        for _ in 0..20 {
            assert_eq!(chosen(dep.pick(&both, None, &[], now)).instance_id, "b");
        }
    }

    #[test]
    fn outstanding_calls_steer_the_next_pick_and_retries_avoid_the_tried() {
        let (dep, _) = dependency(CallPolicy::default());
        let view: Arc<[Instance]> = Arc::from(vec![instance("a", 1, 0), instance("b", 2, 0)]);
        let now = Instant::now();
        let first = chosen(dep.pick(&view, None, &[], now));
        // With the first still outstanding, the other instance is cheaper.
        let second = chosen(dep.pick(&view, None, &[], now));
        assert_ne!(first.instance_id, second.instance_id);
        let tried = [first.key().clone()];
        first.finish(Outcome::Answered(200), now);
        drop(second);
        for _ in 0..20 {
            let retry = chosen(dep.pick(&view, None, &tried, now));
            assert_ne!(retry.key(), &tried[0], "a retry goes elsewhere");
        }
    }

    #[test]
    fn failing_instance_is_ejected_then_probed_back() {
        let policy = CallPolicy {
            eject_after_failures: 2,
            eject: Backoff::new(Duration::from_secs(1), Duration::from_secs(30)),
            ..CallPolicy::default()
        };
        let (dep, registry) = dependency(policy);
        let view: Arc<[Instance]> = Arc::from(vec![instance("a", 1, 0)]);
        let t = Instant::now();
        for _ in 0..2 {
            let f = chosen(dep.pick(&view, None, &[], t));
            f.finish(Outcome::Failed(FailureKind::TimedOut), t);
        }
        match dep.pick(&view, None, &[], t) {
            Pick::AllEjected { retry_in } => assert_eq!(retry_in, Duration::from_secs(1)),
            _ => panic!("expected the only instance to be ejected"),
        }
        let gauge = |registry: &prometheus::Registry| {
            registry
                .gather()
                .iter()
                .find(|f| f.name() == "svc_client_breaker_state")
                .map(|f| f.get_metric()[0].get_gauge().get_value())
        };
        assert_eq!(gauge(&registry), Some(1.0));
        // After the backoff one probe goes; meanwhile nothing else does.
        let t1 = t + Duration::from_secs(1);
        let probe = chosen(dep.pick(&view, None, &[], t1));
        assert_eq!(gauge(&registry), Some(2.0));
        assert!(matches!(
            dep.pick(&view, None, &[], t1),
            Pick::AllEjected { .. }
        ));
        // The caller of the probe gives up: the next call probes instead.
        drop(probe);
        let probe = chosen(dep.pick(&view, None, &[], t1));
        probe.finish(Outcome::Answered(200), t1);
        assert_eq!(gauge(&registry), Some(0.0));
        chosen(dep.pick(&view, None, &[], t1)).finish(Outcome::Answered(200), t1);
    }

    /// Issue 13: a caller with a tiny deadline made every attempt time out, and the
    /// timeouts ejected a healthy instance for everyone.
    #[test]
    fn attempts_cut_short_by_the_callers_deadline_never_eject() {
        let policy = CallPolicy {
            eject_after_failures: 2,
            ..CallPolicy::default()
        };
        let (dep, registry) = dependency(policy);
        let view: Arc<[Instance]> = Arc::from(vec![instance("a", 1, 0)]);
        let t = Instant::now();
        for _ in 0..50 {
            let f = chosen(dep.pick(&view, None, &[], t));
            f.finish(Outcome::CallerOutOfTime, t);
        }
        chosen(dep.pick(&view, None, &[], t)).finish(Outcome::Answered(200), t);
        let ejections = registry
            .gather()
            .iter()
            .find(|f| f.name() == "svc_client_ejections_total")
            .map_or(0.0, |f| f.get_metric()[0].get_counter().get_value());
        assert_eq!(ejections, 0.0);
    }

    #[test]
    fn instances_leaving_the_view_are_forgotten() {
        let (dep, registry) = dependency(CallPolicy::default());
        let t = Instant::now();
        let view: Arc<[Instance]> = Arc::from(vec![instance("a", 1, 0), instance("b", 2, 0)]);
        chosen(dep.pick(&view, None, &[], t)).finish(Outcome::Answered(200), t);
        chosen(dep.pick(&view, None, &[], t)).finish(Outcome::Answered(200), t);
        assert_eq!(dep.endpoints.lock().by_key.len(), 2);
        // "a" restarted at another port; "b" is gone.
        let view: Arc<[Instance]> = Arc::from(vec![instance("a", 3, 0)]);
        chosen(dep.pick(&view, None, &[], t)).finish(Outcome::Answered(200), t);
        let endpoints = &dep.endpoints.lock().by_key;
        assert_eq!(endpoints.len(), 1);
        assert!(endpoints.contains_key(&EndpointKey::of(&view[0])));
        let series = registry
            .gather()
            .iter()
            .find(|f| f.name() == "svc_client_breaker_state")
            .map(|f| f.get_metric().len());
        assert_eq!(series, Some(1), "b's gauge is removed, a's kept");
    }

    #[test]
    fn the_address_is_parsed_once_per_instance_and_a_bad_one_fails_only_its_attempts() {
        let (dep, _) = dependency(CallPolicy::default());
        let t = Instant::now();
        let mut bad = instance("bad", 9, 1);
        bad.address = "http://[not an address".into();
        let view: Arc<[Instance]> = Arc::from(vec![instance("a", 1, 0), bad]);
        let good = chosen(dep.pick(&view, Some(0), &[], t));
        assert_eq!(
            good.base.as_ref().map(|u| u.as_str()),
            Ok("http://127.0.0.1:1/")
        );
        let failed = chosen(dep.pick(&view, Some(1), &[], t));
        let why = failed.base.clone().unwrap_err();
        assert!(why.contains("http://[not an address"), "{why}");
        // The same view again is not checked again; a new one without "bad" drops it.
        good.finish(Outcome::Answered(200), t);
        failed.finish(Outcome::Failed(FailureKind::Broken), t);
        chosen(dep.pick(&view, Some(0), &[], t)).finish(Outcome::Answered(200), t);
        assert_eq!(dep.endpoints.lock().by_key.len(), 2);
        let view: Arc<[Instance]> = Arc::from(vec![instance("a", 1, 0)]);
        chosen(dep.pick(&view, None, &[], t)).finish(Outcome::Answered(200), t);
        assert_eq!(dep.endpoints.lock().by_key.len(), 1);
    }
}
