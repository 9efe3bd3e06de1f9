//! Circuit breaking: one breaker per instance decides whether calls may go to it.
//!
//! ```text
//!            N consecutive failures,
//!            or one refused connection
//!   Closed ─────────────────────────────▶ Open (for `backoff`)
//!     ▲                                     │ backoff elapsed: the next call that
//!     │ the probe succeeds                  ▼ picks the instance is the probe
//!     └──────────────────────────────── HalfOpen (one probe in flight)
//!                                           │ the probe fails:
//!                                           └──▶ Open, backoff doubled (capped)
//! ```
//!
//! - A *failure* is what [`super::retry::Outcome::breaker_signal`] says it is: no
//!   connection, a timeout, a broken exchange, or a 500/502/504 answer. A refused
//!   connection opens the breaker at once: nothing listens there, and waiting for N of
//!   them would only cost N callers an error.
//! - While open, the instance gets no calls. After the backoff, exactly one real call
//!   is let through (half-open); its result alone decides: success closes the breaker
//!   and resets the backoff, failure re-opens it for twice as long, up to the cap.
//! - Results of calls that started before the breaker opened are ignored while it is
//!   open or half-open: they describe the past, and only the probe may close it.
//! - A probe whose caller gave up (the future was dropped) frees the probe slot
//!   without a verdict, so the next call probes instead.
//!
//! The breaker is plain data with time passed in: the state machine is tested without
//! a clock or a network, and the caller logs and counts the [`Transition`]s. The
//! opening after `n` failed probes lasts [`Backoff::exact`]`(n + 1)`: exact, not
//! jittered, since it is also what callers are told to wait (`Retry-After`).

use std::time::{Duration, Instant};

use crate::backoff::Backoff;

/// When an instance is ejected, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BreakerPolicy {
    /// Consecutive failures that open the breaker (at least 1).
    pub(crate) failures_to_open: u32,
    /// How long an opening lasts: `base` the first time, doubling with each failed
    /// probe up to `max`.
    pub(crate) ejection: Backoff,
}

/// The three states, as exported in the `svc_client_breaker_state` gauge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum State {
    Closed = 0,
    Open = 1,
    HalfOpen = 2,
}

/// What one finished call tells the breaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Signal {
    Success,
    Failure,
    /// The connection was refused: nobody listens at the address.
    Refused,
}

/// Whether a call may go to the instance now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Admission {
    Yes,
    /// Yes, as the one probe of an ejected instance: call [`Breaker::start_probe`].
    Probe,
    No,
}

/// Why the breaker opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum OpenCause {
    ConsecutiveFailures(u32),
    Refused,
    ProbeFailed,
}

/// A change of state, for the caller to log and count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Transition {
    Opened { cause: OpenCause, backoff: Duration },
    HalfOpened,
    Closed,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Inner {
    Closed {
        failures: u32,
    },
    /// `openings`: 1 for the first opening, one more for each failed probe since.
    Open {
        until: Instant,
        openings: u32,
    },
    HalfOpen {
        openings: u32,
        probing: bool,
    },
}

#[derive(Debug, Clone)]
pub(crate) struct Breaker {
    policy: BreakerPolicy,
    inner: Inner,
}

impl Breaker {
    pub(crate) fn new(policy: BreakerPolicy) -> Breaker {
        Breaker {
            policy,
            inner: Inner::Closed { failures: 0 },
        }
    }

    pub(crate) fn state(&self) -> State {
        match self.inner {
            Inner::Closed { .. } => State::Closed,
            Inner::Open { .. } => State::Open,
            Inner::HalfOpen { .. } => State::HalfOpen,
        }
    }

    /// Whether a call starting at `now` may go to this instance.
    pub(crate) fn admission(&self, now: Instant) -> Admission {
        match self.inner {
            Inner::Closed { .. } => Admission::Yes,
            Inner::Open { until, .. } if now >= until => Admission::Probe,
            Inner::HalfOpen { probing: false, .. } => Admission::Probe,
            Inner::Open { .. } | Inner::HalfOpen { probing: true, .. } => Admission::No,
        }
    }

    /// How long until a probe may go, if the breaker is open; zero once it may.
    pub(crate) fn probe_in(&self, now: Instant) -> Option<Duration> {
        match self.inner {
            Inner::Closed { .. } => None,
            Inner::Open { until, .. } => Some(until.saturating_duration_since(now)),
            Inner::HalfOpen { .. } => Some(Duration::ZERO),
        }
    }

    /// Marks the probe as sent (after [`Admission::Probe`]).
    pub(crate) fn start_probe(&mut self, now: Instant) -> Option<Transition> {
        match self.inner {
            Inner::Open { until, openings } if now >= until => {
                self.inner = Inner::HalfOpen {
                    openings,
                    probing: true,
                };
                Some(Transition::HalfOpened)
            }
            Inner::HalfOpen {
                openings,
                probing: false,
            } => {
                self.inner = Inner::HalfOpen {
                    openings,
                    probing: true,
                };
                None
            }
            _ => None,
        }
    }

    /// Records the result of a finished call; `probe` says whether it was the probe.
    pub(crate) fn record(
        &mut self,
        signal: Signal,
        probe: bool,
        now: Instant,
    ) -> Option<Transition> {
        match (self.inner, signal) {
            (Inner::Closed { .. }, Signal::Success) => {
                self.inner = Inner::Closed { failures: 0 };
                None
            }
            (Inner::Closed { .. }, Signal::Refused) => Some(self.open(now, 1, OpenCause::Refused)),
            (Inner::Closed { failures }, Signal::Failure) => {
                let failures = failures.saturating_add(1);
                if failures >= self.policy.failures_to_open.max(1) {
                    Some(self.open(now, 1, OpenCause::ConsecutiveFailures(failures)))
                } else {
                    self.inner = Inner::Closed { failures };
                    None
                }
            }
            (Inner::HalfOpen { .. }, Signal::Success) if probe => {
                self.inner = Inner::Closed { failures: 0 };
                Some(Transition::Closed)
            }
            (Inner::HalfOpen { openings, .. }, Signal::Failure | Signal::Refused) if probe => {
                // Open again, for twice as long (up to the cap).
                Some(self.open(now, openings.saturating_add(1), OpenCause::ProbeFailed))
            }
            // Calls that started before the breaker opened: old news.
            (Inner::Open { .. } | Inner::HalfOpen { .. }, _) => None,
        }
    }

    /// The probe's caller gave up before a result: let the next call probe.
    pub(crate) fn abandon_probe(&mut self) {
        if let Inner::HalfOpen { openings, .. } = self.inner {
            self.inner = Inner::HalfOpen {
                openings,
                probing: false,
            };
        }
    }

    fn open(&mut self, now: Instant, openings: u32, cause: OpenCause) -> Transition {
        let backoff = self.policy.ejection.exact(openings);
        self.inner = Inner::Open {
            until: now + backoff,
            openings,
        };
        Transition::Opened { cause, backoff }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn breaker() -> Breaker {
        Breaker::new(BreakerPolicy {
            failures_to_open: 3,
            ejection: Backoff::new(S, Duration::from_secs(4)),
        })
    }

    #[test]
    fn opens_after_consecutive_failures_only() {
        let t = Instant::now();
        let mut b = breaker();
        assert_eq!(b.record(Signal::Failure, false, t), None);
        assert_eq!(b.record(Signal::Failure, false, t), None);
        // A success in between starts the count again.
        assert_eq!(b.record(Signal::Success, false, t), None);
        assert_eq!(b.record(Signal::Failure, false, t), None);
        assert_eq!(b.record(Signal::Failure, false, t), None);
        assert_eq!(b.state(), State::Closed);
        assert_eq!(
            b.record(Signal::Failure, false, t),
            Some(Transition::Opened {
                cause: OpenCause::ConsecutiveFailures(3),
                backoff: S
            })
        );
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.admission(t), Admission::No);
        assert_eq!(b.probe_in(t), Some(S));
    }

    #[test]
    fn a_refused_connection_opens_at_once() {
        let t = Instant::now();
        let mut b = breaker();
        assert_eq!(
            b.record(Signal::Refused, false, t),
            Some(Transition::Opened {
                cause: OpenCause::Refused,
                backoff: S
            })
        );
        assert_eq!(b.admission(t + S / 2), Admission::No);
    }

    #[test]
    fn one_probe_after_the_backoff_and_its_result_decides() {
        let t = Instant::now();
        let mut b = breaker();
        b.record(Signal::Refused, false, t);
        let t1 = t + S;
        assert_eq!(b.admission(t1), Admission::Probe);
        assert_eq!(b.start_probe(t1), Some(Transition::HalfOpened));
        assert_eq!(b.state(), State::HalfOpen);
        // Only one probe at a time.
        assert_eq!(b.admission(t1), Admission::No);
        // Late results of older calls do not count.
        assert_eq!(b.record(Signal::Success, false, t1), None);
        assert_eq!(b.state(), State::HalfOpen);
        // The probe fails: open again, twice as long.
        assert_eq!(
            b.record(Signal::Failure, true, t1),
            Some(Transition::Opened {
                cause: OpenCause::ProbeFailed,
                backoff: 2 * S
            })
        );
        assert_eq!(b.admission(t1 + S), Admission::No);
        let t2 = t1 + 2 * S;
        assert_eq!(b.admission(t2), Admission::Probe);
        b.start_probe(t2);
        // The next failed probe doubles again, then the cap holds.
        b.record(Signal::Failure, true, t2);
        assert_eq!(b.probe_in(t2), Some(4 * S));
        let t3 = t2 + 4 * S;
        b.start_probe(t3);
        b.record(Signal::Refused, true, t3);
        assert_eq!(b.probe_in(t3), Some(4 * S), "capped at max");
        // A successful probe closes it and resets the backoff.
        let t4 = t3 + 4 * S;
        b.start_probe(t4);
        assert_eq!(
            b.record(Signal::Success, true, t4),
            Some(Transition::Closed)
        );
        assert_eq!(b.admission(t4), Admission::Yes);
        b.record(Signal::Refused, false, t4);
        assert_eq!(b.probe_in(t4), Some(S), "backoff starts over");
    }

    #[test]
    fn an_abandoned_probe_frees_the_slot() {
        let t = Instant::now();
        let mut b = breaker();
        b.record(Signal::Refused, false, t);
        b.start_probe(t + S);
        assert_eq!(b.admission(t + S), Admission::No);
        b.abandon_probe();
        assert_eq!(b.state(), State::HalfOpen);
        assert_eq!(b.admission(t + S), Admission::Probe);
        assert_eq!(b.start_probe(t + S), None, "already half-open");
        assert_eq!(
            b.record(Signal::Success, true, t + S),
            Some(Transition::Closed)
        );
    }

    #[test]
    fn results_while_open_are_ignored() {
        let t = Instant::now();
        let mut b = breaker();
        b.record(Signal::Refused, false, t);
        assert_eq!(b.record(Signal::Success, false, t), None);
        assert_eq!(b.record(Signal::Failure, false, t), None);
        assert_eq!(b.state(), State::Open);
        assert_eq!(b.probe_in(t), Some(S), "not extended");
    }
}
