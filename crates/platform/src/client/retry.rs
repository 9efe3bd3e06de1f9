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
//! ([`super::budget`]); the pause before it is [`crate::backoff::Backoff::delay`].

use super::breaker::Signal;

/// How an attempt failed when no answer came back.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
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
    pub fn label(self) -> &'static str {
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
pub enum Outcome {
    Answered(u16),
    Failed(FailureKind),
}

impl Outcome {
    /// What the instance's breaker learns. 503 is not a failure of the instance: it is
    /// how a healthy instance sheds load or reports that *its* dependency is down, and
    /// ejecting it would only move the problem. 4xx answers are the caller's problem.
    pub fn breaker_signal(self) -> Signal {
        match self {
            Outcome::Answered(500 | 502 | 504) => Signal::Failure,
            Outcome::Answered(_) => Signal::Success,
            Outcome::Failed(FailureKind::Refused) => Signal::Refused,
            Outcome::Failed(_) => Signal::Failure,
        }
    }

    /// The answer's latency is worth learning from (see [`super::balance`]).
    pub fn is_answer(self) -> bool {
        matches!(self, Outcome::Answered(_))
    }

    /// Whether repeating the call after this outcome is safe and may help.
    pub fn retryable(self, idempotent: bool) -> bool {
        match self {
            Outcome::Failed(FailureKind::Refused | FailureKind::NotConnected) => true,
            Outcome::Failed(FailureKind::TimedOut | FailureKind::Broken) => idempotent,
            Outcome::Answered(500 | 502 | 503 | 504) => idempotent,
            Outcome::Answered(_) => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        assert_eq!(Outcome::Answered(200).breaker_signal(), Signal::Success);
        assert_eq!(Outcome::Answered(404).breaker_signal(), Signal::Success);
        assert_eq!(Outcome::Answered(503).breaker_signal(), Signal::Success);
        assert_eq!(Outcome::Answered(500).breaker_signal(), Signal::Failure);
        assert_eq!(Outcome::Answered(504).breaker_signal(), Signal::Failure);
        assert_eq!(
            Outcome::Failed(FailureKind::TimedOut).breaker_signal(),
            Signal::Failure
        );
        assert_eq!(
            Outcome::Failed(FailureKind::Refused).breaker_signal(),
            Signal::Refused
        );
    }
}
