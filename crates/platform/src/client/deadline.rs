//! Deadlines: how long the caller will still wait, passed from call to call.
//!
//! Every outgoing attempt carries `x-svc-deadline-ms`, the milliseconds its caller is
//! still willing to wait. The server ([`crate::server::observe`]) reads it,
//! runs the handler for at most that long (a callee does not keep working for a caller
//! that gave up), and installs the deadline in a task-local with [`scope`]; calls made
//! while handling the request then take `min(own timeout, what is left)` through
//! [`effective`], so a chain of calls never outlives the request at its edge.
//!
//! The header is relative (time left), not an absolute time, so the clocks of two
//! machines never need to agree; the cost is that time spent in flight is not counted,
//! which only makes the callee a little more generous than the caller.
//!
//! Work that is spawned (a saga, the outbox relay) leaves the task and so the deadline
//! behind on purpose: it is not the request's work and must finish on its own schedule.

use std::future::Future;
use std::time::{Duration, Instant};

/// Header carrying the caller's remaining budget, in whole milliseconds.
pub(crate) const HEADER: &str = "x-svc-deadline-ms";

/// The longest budget a caller may hand on; longer values are cut to it, so a bogus
/// header cannot pin a handler for days.
const MAX_BUDGET: Duration = Duration::from_secs(3600);

/// What a handler that waits on purpose (see [`bounded`]) leaves itself to answer:
/// a tenth of the time left, at least this much.
const MIN_HEADROOM: Duration = Duration::from_millis(20);

tokio::task_local! {
    static DEADLINE: Instant;
}

/// Parses the header: whole milliseconds, digits only. `Some(ZERO)` means "already
/// expired"; `None` means absent-or-garbage, which is ignored (the header is internal,
/// and a missing budget only means the callee's own limits apply).
pub(crate) fn parse(value: &str) -> Option<Duration> {
    let value = value.trim();
    if value.is_empty() || value.len() > 12 || !value.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let ms: u64 = value.parse().ok()?;
    Some(Duration::from_millis(ms).min(MAX_BUDGET))
}

/// The header value for `remaining`: whole milliseconds, rounded down so the callee
/// never believes it has more time than the caller.
pub(crate) fn encode(remaining: Duration) -> String {
    remaining.min(MAX_BUDGET).as_millis().to_string()
}

/// The deadline of the request being handled, if its caller sent one.
pub fn current() -> Option<Instant> {
    DEADLINE.try_with(|d| *d).ok()
}

/// Runs `fut` with `deadline` as the current deadline.
pub async fn scope<F: Future>(deadline: Instant, fut: F) -> F::Output {
    DEADLINE.scope(deadline, fut).await
}

/// When a call starting `now` with its own `timeout` must be over: the earlier of its
/// own limit and the deadline of the request it is made for.
pub(crate) fn effective(now: Instant, timeout: Duration, inherited: Option<Instant>) -> Instant {
    let own = now + timeout;
    inherited.map_or(own, |d| d.min(own))
}

/// How long a handler may wait on purpose (e.g. for a saga to end) when it wants
/// `wanted`: no longer than the caller's deadline minus some headroom to answer, so
/// the caller gets the handler's answer rather than a timeout.
pub fn bounded(wanted: Duration) -> Duration {
    bounded_at(Instant::now(), wanted, current())
}

fn bounded_at(now: Instant, wanted: Duration, deadline: Option<Instant>) -> Duration {
    let Some(deadline) = deadline else {
        return wanted;
    };
    let left = deadline.saturating_duration_since(now);
    let headroom = (left / 10).max(MIN_HEADROOM);
    wanted.min(left.saturating_sub(headroom))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_parses_whole_milliseconds_only() {
        assert_eq!(parse("1500"), Some(Duration::from_millis(1500)));
        assert_eq!(parse(" 20 "), Some(Duration::from_millis(20)));
        assert_eq!(parse("0"), Some(Duration::ZERO), "zero: already expired");
        for bad in ["", "-5", "1.5", "1e3", "10ms", "abc", "9999999999999"] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert_eq!(parse("99999999999"), Some(MAX_BUDGET), "clamped");
    }

    #[test]
    fn header_rounds_down() {
        assert_eq!(encode(Duration::from_micros(1999)), "1");
        assert_eq!(encode(Duration::from_millis(250)), "250");
        assert_eq!(parse(&encode(Duration::from_secs(7200))), Some(MAX_BUDGET));
    }

    #[test]
    fn effective_deadline_is_the_earlier_one() {
        let now = Instant::now();
        let own = Duration::from_secs(2);
        assert_eq!(effective(now, own, None), now + own);
        let near = now + Duration::from_millis(300);
        assert_eq!(effective(now, own, Some(near)), near);
        let far = now + Duration::from_secs(10);
        assert_eq!(effective(now, own, Some(far)), now + own);
    }

    #[test]
    fn bounded_waits_leave_headroom() {
        let now = Instant::now();
        let wanted = Duration::from_secs(2);
        assert_eq!(bounded_at(now, wanted, None), wanted);
        let d = bounded_at(now, wanted, Some(now + Duration::from_secs(1)));
        assert_eq!(d, Duration::from_millis(900));
        let d = bounded_at(now, wanted, Some(now + Duration::from_millis(100)));
        assert_eq!(d, Duration::from_millis(80));
        let d = bounded_at(now, wanted, Some(now + Duration::from_millis(10)));
        assert_eq!(d, Duration::ZERO);
        let d = bounded_at(now, wanted, Some(now + Duration::from_secs(60)));
        assert_eq!(d, wanted);
    }

    #[tokio::test]
    async fn scope_sets_the_current_deadline() {
        assert_eq!(current(), None);
        let d = Instant::now() + Duration::from_secs(1);
        assert_eq!(scope(d, async { current() }).await, Some(d));
        assert_eq!(current(), None);
    }
}
