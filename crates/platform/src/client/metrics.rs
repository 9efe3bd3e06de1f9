//! The client's Prometheus metrics, registered on the process's registry.
//!
//! Labelled by `dependency` (the role called), never by path, so cardinality stays
//! at roles × outcomes; the breaker gauge adds the instance, and its series is removed
//! when the instance leaves the view.
//!
//! | metric | labels | meaning |
//! |---|---|---|
//! | `svc_client_requests_total` | dependency, outcome | calls, by how they ended: `ok` (an answer below 500), `error_status` (a 5xx answer), `timeout`, `deadline`, `unreachable`, `no_instance`, `ejected`, `overloaded`, `cancelled` (the caller gave up) |
//! | `svc_client_attempt_errors_total` | dependency, kind | attempts that failed: `refused`, `connect`, `timeout`, `broken`, `status_5xx` |
//! | `svc_client_request_duration_seconds` | dependency | time of a whole call, retries included |
//! | `svc_client_retries_total` | dependency | retries sent |
//! | `svc_client_retries_skipped_total` | dependency, reason | retries allowed by the rules but not made: `budget` (retry budget spent), `deadline` (no time left for the pause and another try) |
//! | `svc_client_ejections_total` | dependency | times an instance's breaker opened |
//! | `svc_client_breaker_state` | dependency, instance_id | 0 closed, 1 open, 2 half-open |
//! | `svc_client_in_flight` | dependency | calls holding a concurrency permit |

use prometheus::{
    HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

#[derive(Clone)]
pub(crate) struct ClientMetrics {
    requests: IntCounterVec,
    attempt_errors: IntCounterVec,
    duration: HistogramVec,
    retries: IntCounterVec,
    retries_skipped: IntCounterVec,
    ejections: IntCounterVec,
    breaker: IntGaugeVec,
    in_flight: IntGaugeVec,
}

impl ClientMetrics {
    pub(crate) fn new(registry: &Registry) -> Result<ClientMetrics, prometheus::Error> {
        let counter = |name: &str, help: &str, labels: &[&str]| {
            IntCounterVec::new(Opts::new(name, help), labels)
        };
        let gauge = |name: &str, help: &str, labels: &[&str]| {
            IntGaugeVec::new(Opts::new(name, help), labels)
        };
        let m = ClientMetrics {
            requests: counter(
                "svc_client_requests_total",
                "Calls to other roles, by dependency and how they ended.",
                &["dependency", "outcome"],
            )?,
            attempt_errors: counter(
                "svc_client_attempt_errors_total",
                "Attempts to other roles that failed, by dependency and kind.",
                &["dependency", "kind"],
            )?,
            duration: HistogramVec::new(
                HistogramOpts::new(
                    "svc_client_request_duration_seconds",
                    "Time of a call to another role, retries included.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                ]),
                &["dependency"],
            )?,
            retries: counter(
                "svc_client_retries_total",
                "Retries sent to other roles.",
                &["dependency"],
            )?,
            retries_skipped: counter(
                "svc_client_retries_skipped_total",
                "Retries the rules allowed but the retry budget or the deadline did not.",
                &["dependency", "reason"],
            )?,
            ejections: counter(
                "svc_client_ejections_total",
                "Times a circuit breaker ejected an instance.",
                &["dependency"],
            )?,
            breaker: gauge(
                "svc_client_breaker_state",
                "Circuit breaker of each instance: 0 closed, 1 open, 2 half-open.",
                &["dependency", "instance_id"],
            )?,
            in_flight: gauge(
                "svc_client_in_flight",
                "Calls in flight to a dependency (concurrency permits held).",
                &["dependency"],
            )?,
        };
        for c in [
            Box::new(m.requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(m.attempt_errors.clone()),
            Box::new(m.duration.clone()),
            Box::new(m.retries.clone()),
            Box::new(m.retries_skipped.clone()),
            Box::new(m.ejections.clone()),
            Box::new(m.breaker.clone()),
            Box::new(m.in_flight.clone()),
        ] {
            registry.register(c)?;
        }
        Ok(m)
    }

    /// The series of one dependency, resolved once.
    pub(crate) fn dependency(&self, role: &str) -> DependencyMetrics {
        DependencyMetrics {
            role: role.to_string(),
            all: self.clone(),
            duration: self.duration.with_label_values(&[role]),
            retries: self.retries.with_label_values(&[role]),
            skipped_budget: self.retries_skipped.with_label_values(&[role, "budget"]),
            skipped_deadline: self.retries_skipped.with_label_values(&[role, "deadline"]),
            ejections: self.ejections.with_label_values(&[role]),
            in_flight: self.in_flight.with_label_values(&[role]),
        }
    }
}

/// Metrics of calls to one dependency.
#[derive(Clone)]
pub(crate) struct DependencyMetrics {
    role: String,
    all: ClientMetrics,
    pub(crate) duration: prometheus::Histogram,
    pub(crate) retries: IntCounter,
    pub(crate) skipped_budget: IntCounter,
    pub(crate) skipped_deadline: IntCounter,
    pub(crate) ejections: IntCounter,
    pub(crate) in_flight: IntGauge,
}

impl DependencyMetrics {
    pub(crate) fn call_ended(&self, outcome: &str) {
        self.all
            .requests
            .with_label_values(&[&self.role, outcome])
            .inc();
    }

    pub(crate) fn attempt_failed(&self, kind: &str) {
        self.all
            .attempt_errors
            .with_label_values(&[&self.role, kind])
            .inc();
    }

    pub(crate) fn breaker_state(&self, instance: &str, state: i64) {
        self.all
            .breaker
            .with_label_values(&[&self.role, instance])
            .set(state);
    }

    pub(crate) fn forget_instance(&self, instance: &str) {
        let _ = self
            .all
            .breaker
            .remove_label_values(&[&self.role, instance]);
    }
}
