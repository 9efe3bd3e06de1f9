//! What one attempt's outcome means: for the breaker, for the balancer, for a retry.
//!
//! The retry rule is about safety first: an attempt may be repeated only if
//!
//! - it was never sent (the connection could not be made: refused, unreachable, TLS or
//!   connect timeout), whatever the method, because the callee cannot have acted on it;
//! - or the call is idempotent ([`super::Call::idempotent`]; GET by default), and the
//!   attempt timed out, broke mid-exchange, or was answered 500/502/503/504.
//!
//! Everything else is final: an answer below 500 is the callee's verdict, and a POST
//! that may have been received must not run twice. Whether a permitted retry actually
//! happens also depends on attempts left, the deadline and the retry budget
//! ([`super::budget`]); the pause before it is [`crate::backoff::Backoff::delay`]. All of
//! that is one pure function, [`decide`]: the service client gathers the facts after
//! each attempt and does what it says.

use std::time::Duration;

use rand::Rng;

use super::breaker::Signal;
use crate::config::CallPolicy;

/// How an attempt failed when no answer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum FailureKind {
    /// The connection was refused: nothing listens there.
    Refused,
    /// No connection for another reason (unreachable, connect timeout, TLS).
    NotConnected,
    /// The attempt's time ran out after the request may have been sent.
    TimedOut,
    /// The exchange broke after the request may have been sent (reset, bad answer).
    Broken,
}

impl FailureKind {
    /// The metric label.
    pub(crate) fn label(self) -> &'static str {
        match self {
            FailureKind::Refused => "refused",
            FailureKind::NotConnected => "connect",
            FailureKind::TimedOut => "timeout",
            FailureKind::Broken => "broken",
        }
    }
}

/// What came of one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Outcome {
    Answered(u16),
    Failed(FailureKind),
    /// The attempt ran out of time at the deadline of the request it was made for,
    /// before the dependency's own time for it (it timed out, or the callee answered
    /// 504 to the deadline it was handed): the caller's shortage, no verdict on the
    /// instance. See [`Outcome::judged`].
    CallerOutOfTime,
}

impl Outcome {
    /// This outcome as the instance is judged by, when the attempt's time was what
    /// was left of its caller's deadline (`callers_deadline`), not the dependency's
    /// own timeout: a timeout (or a 504) then only says that the caller had little
    /// time, and whoever sets a short deadline could otherwise eject healthy
    /// instances for everyone.
    pub(crate) fn judged(self, callers_deadline: bool) -> Outcome {
        match self {
            Outcome::Failed(FailureKind::TimedOut) | Outcome::Answered(504) if callers_deadline => {
                Outcome::CallerOutOfTime
            }
            other => other,
        }
    }

    /// What the instance's breaker learns, if anything. 503 is not a failure of the
    /// instance: it is how a healthy instance sheds load or reports that *its*
    /// dependency is down, and ejecting it would only move the problem. 4xx answers
    /// are the caller's problem, and so is running out of the caller's time (`None`).
    pub(crate) fn breaker_signal(self) -> Option<Signal> {
        match self {
            Outcome::Answered(500 | 502 | 504) => Some(Signal::Failure),
            Outcome::Answered(_) => Some(Signal::Success),
            Outcome::Failed(FailureKind::Refused) => Some(Signal::Refused),
            Outcome::Failed(_) => Some(Signal::Failure),
            Outcome::CallerOutOfTime => None,
        }
    }

    /// The answer's latency is worth learning from (see [`super::balance`]).
    pub(crate) fn is_answer(self) -> bool {
        matches!(self, Outcome::Answered(_))
    }

    /// Whether repeating the call after this outcome is safe and may help.
    fn retryable(self, idempotent: bool) -> bool {
        match self {
            Outcome::Failed(FailureKind::Refused | FailureKind::NotConnected) => true,
            Outcome::Failed(FailureKind::TimedOut | FailureKind::Broken) => idempotent,
            Outcome::Answered(500 | 502 | 503 | 504) => idempotent,
            Outcome::Answered(_) => false,
            // The request it served has no time left for another.
            Outcome::CallerOutOfTime => false,
        }
    }
}

/// What is known after an attempt, for [`decide`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AfterAttempt {
    pub(crate) outcome: Outcome,
    /// Whether the call may be repeated once sent ([`super::Call::idempotent`]).
    pub(crate) idempotent: bool,
    /// Attempts made so far, this one included (1 after the first).
    pub(crate) attempts: u32,
    /// Until the call's deadline.
    pub(crate) time_left: Duration,
    /// Whether the dependency's retry budget has a retry left.
    pub(crate) budget_allows: bool,
}

/// What to do after an attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Decision {
    /// Repeat the call after this pause (and take the retry from the budget).
    Retry { after: Duration },
    /// Return this attempt's result as it is.
    GiveUp(GiveUp),
}

/// Why an attempt's result is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum GiveUp {
    /// Repeating is unsafe or cannot help ([`Outcome::retryable`]); success included.
    Final,
    /// `max_attempts` were made.
    NoAttemptsLeft,
    /// The pause before a retry would reach the deadline.
    NoTimeLeft,
    /// The dependency's retry budget is spent.
    BudgetSpent,
}

/// Whether to repeat a call after an attempt, and after how long: the rules above, in
/// this order (attempts, safety, deadline, budget). Pure apart from the jitter, which
/// comes from `rng`.
pub(crate) fn decide(facts: &AfterAttempt, policy: &CallPolicy, rng: &mut impl Rng) -> Decision {
    if facts.attempts >= policy.max_attempts.max(1) {
        return Decision::GiveUp(GiveUp::NoAttemptsLeft);
    }
    if !facts.outcome.retryable(facts.idempotent) {
        return Decision::GiveUp(GiveUp::Final);
    }
    let pause = policy.backoff.delay(facts.attempts, rng);
    if pause >= facts.time_left {
        return Decision::GiveUp(GiveUp::NoTimeLeft);
    }
    if !facts.budget_allows {
        return Decision::GiveUp(GiveUp::BudgetSpent);
    }
    Decision::Retry { after: pause }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> CallPolicy {
        CallPolicy {
            max_attempts: 3,
            backoff: crate::backoff::Backoff::new(20 * MS, 100 * MS),
            ..CallPolicy::default()
        }
    }

    /// A first attempt with plenty of time and budget.
    fn after(outcome: Outcome, idempotent: bool) -> AfterAttempt {
        AfterAttempt {
            outcome,
            idempotent,
            attempts: 1,
            time_left: Duration::from_secs(5),
            budget_allows: true,
        }
    }

    fn decide_seeded(facts: AfterAttempt) -> Decision {
        decide(&facts, &policy(), &mut StdRng::seed_from_u64(1))
    }

    fn retries(d: Decision) -> bool {
        matches!(d, Decision::Retry { .. })
    }

    #[test]
    fn never_sent_is_retried_even_when_not_idempotent() {
        for kind in [FailureKind::Refused, FailureKind::NotConnected] {
            let d = decide_seeded(after(Outcome::Failed(kind), false));
            assert!(retries(d), "{kind:?}: {d:?}");
        }
    }

    #[test]
    fn idempotent_timeouts_and_5xx_are_retried_after_the_first_backoff() {
        for outcome in [
            Outcome::Failed(FailureKind::TimedOut),
            Outcome::Failed(FailureKind::Broken),
            Outcome::Answered(500),
            Outcome::Answered(503),
        ] {
            match decide_seeded(after(outcome, true)) {
                Decision::Retry { after } => {
                    assert!(
                        after >= 10 * MS && after <= 20 * MS,
                        "{outcome:?}: {after:?}"
                    )
                }
                other => panic!("{outcome:?}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_sent_call_that_is_not_idempotent_is_final() {
        for outcome in [
            Outcome::Failed(FailureKind::TimedOut),
            Outcome::Failed(FailureKind::Broken),
            Outcome::Answered(502),
        ] {
            let d = decide_seeded(after(outcome, false));
            assert_eq!(d, Decision::GiveUp(GiveUp::Final), "{outcome:?}");
        }
        // An answer below 500 is the callee's verdict, idempotent or not.
        let d = decide_seeded(after(Outcome::Answered(409), true));
        assert_eq!(d, Decision::GiveUp(GiveUp::Final));
    }

    #[test]
    fn a_spent_budget_stops_a_retry_the_rules_allow() {
        let facts = AfterAttempt {
            budget_allows: false,
            ..after(Outcome::Answered(503), true)
        };
        assert_eq!(decide_seeded(facts), Decision::GiveUp(GiveUp::BudgetSpent));
    }

    #[test]
    fn no_retry_whose_pause_reaches_the_deadline() {
        // The first pause is at least 10 ms.
        for left in [Duration::ZERO, 5 * MS, 10 * MS] {
            let facts = AfterAttempt {
                time_left: left,
                ..after(Outcome::Failed(FailureKind::Refused), false)
            };
            assert_eq!(decide_seeded(facts), Decision::GiveUp(GiveUp::NoTimeLeft));
        }
        let facts = AfterAttempt {
            time_left: 21 * MS,
            ..after(Outcome::Failed(FailureKind::Refused), false)
        };
        assert!(retries(decide_seeded(facts)));
    }

    #[test]
    fn max_attempts_ends_it_whatever_else_allows() {
        let facts = AfterAttempt {
            attempts: 3,
            ..after(Outcome::Failed(FailureKind::Refused), true)
        };
        assert_eq!(
            decide_seeded(facts),
            Decision::GiveUp(GiveUp::NoAttemptsLeft)
        );
        let facts = AfterAttempt {
            attempts: 2,
            ..facts
        };
        assert!(retries(decide_seeded(facts)));
        let once = CallPolicy {
            max_attempts: 1,
            ..policy()
        };
        let facts = after(Outcome::Failed(FailureKind::Refused), true);
        let d = decide(&facts, &once, &mut StdRng::seed_from_u64(1));
        assert_eq!(d, Decision::GiveUp(GiveUp::NoAttemptsLeft));
    }

    #[test]
    fn later_retries_wait_longer() {
        let facts = AfterAttempt {
            attempts: 2,
            ..after(Outcome::Answered(500), true)
        };
        match decide_seeded(facts) {
            Decision::Retry { after } => assert!(after >= 20 * MS && after <= 40 * MS),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn never_sent_is_always_retryable() {
        for idempotent in [false, true] {
            assert!(Outcome::Failed(FailureKind::Refused).retryable(idempotent));
            assert!(Outcome::Failed(FailureKind::NotConnected).retryable(idempotent));
        }
    }

    #[test]
    fn maybe_sent_needs_idempotence() {
        for o in [
            Outcome::Failed(FailureKind::TimedOut),
            Outcome::Failed(FailureKind::Broken),
            Outcome::Answered(500),
            Outcome::Answered(503),
        ] {
            assert!(!o.retryable(false), "{o:?}");
            assert!(o.retryable(true), "{o:?}");
        }
        for status in [200, 201, 404, 409, 422, 429, 501] {
            assert!(!Outcome::Answered(status).retryable(true), "{status}");
        }
    }

    #[test]
    fn breaker_signals() {
        let signal = |o: Outcome| o.breaker_signal();
        assert_eq!(signal(Outcome::Answered(200)), Some(Signal::Success));
        assert_eq!(signal(Outcome::Answered(404)), Some(Signal::Success));
        assert_eq!(signal(Outcome::Answered(503)), Some(Signal::Success));
        assert_eq!(signal(Outcome::Answered(500)), Some(Signal::Failure));
        assert_eq!(signal(Outcome::Answered(504)), Some(Signal::Failure));
        assert_eq!(
            signal(Outcome::Failed(FailureKind::TimedOut)),
            Some(Signal::Failure)
        );
        assert_eq!(
            signal(Outcome::Failed(FailureKind::Refused)),
            Some(Signal::Refused)
        );
        assert_eq!(signal(Outcome::CallerOutOfTime), None);
    }

    /// Issue 13: timeouts at a caller's tiny deadline ejected healthy instances.
    #[test]
    fn running_out_of_the_callers_time_is_no_verdict_on_the_callee() {
        for outcome in [
            Outcome::Failed(FailureKind::TimedOut),
            Outcome::Answered(504),
        ] {
            let judged = outcome.judged(true);
            assert_eq!(judged, Outcome::CallerOutOfTime, "{outcome:?}");
            assert_eq!(judged.breaker_signal(), None);
            assert!(!judged.is_answer(), "the balancer learns nothing from it");
            assert!(!judged.retryable(true));
            // With the dependency's own time, the same outcome is the callee's.
            assert_eq!(outcome.judged(false), outcome);
        }
        for outcome in [
            Outcome::Failed(FailureKind::Refused),
            Outcome::Failed(FailureKind::Broken),
            Outcome::Answered(500),
            Outcome::Answered(200),
        ] {
            assert_eq!(outcome.judged(true), outcome, "{outcome:?}");
        }
    }
}
