//! The retry budget: retries may add only a fixed share to the calls of a dependency.
//!
//! Retrying is how a client rides over one bad instance; retrying everything is how a
//! client turns an overloaded dependency into a dead one (every failed call comes back
//! `max_attempts` times). So retries are paid for from a budget per dependency: over a
//! sliding window of [`WINDOW`], retries may be at most `ratio` × the calls made plus
//! `floor_per_s` × the window's seconds. The floor lets a quiet dependency (a few calls
//! a minute) still retry; the ratio bounds the extra load to, e.g., 20 % whatever the
//! failure rate.
//!
//! The window is [`SLOTS`] one-second slots in a ring: counting is O(1), memory is
//! fixed, and time is passed in, so the arithmetic is tested without a clock.

use std::time::{Duration, Instant};

/// How far back calls and retries are counted.
const WINDOW: Duration = Duration::from_secs(10);
const SLOTS: usize = 10;
const SLOT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, Copy, Default)]
struct Slot {
    /// Which second since `origin` this slot counts; older contents are stale.
    second: u64,
    calls: u64,
    retries: u64,
}

#[derive(Debug, Clone)]
pub(crate) struct RetryBudget {
    ratio: f64,
    floor_per_s: f64,
    origin: Instant,
    slots: [Slot; SLOTS],
}

impl RetryBudget {
    /// `ratio`: retries per call allowed (0.2 = 20 %); `floor_per_s`: retries per second
    /// allowed on top, whatever the traffic.
    pub(crate) fn new(ratio: f64, floor_per_s: f64, now: Instant) -> RetryBudget {
        RetryBudget {
            ratio: ratio.max(0.0),
            floor_per_s: floor_per_s.max(0.0),
            origin: now,
            slots: [Slot::default(); SLOTS],
        }
    }

    /// Counts a call (its first attempt).
    pub(crate) fn record_call(&mut self, now: Instant) {
        self.slot(now).calls += 1;
    }

    /// Whether a retry is left, without taking it.
    pub(crate) fn allows(&self, now: Instant) -> bool {
        let (calls, retries) = self.totals(now);
        retries < self.allowed(calls)
    }

    /// Takes one retry from the budget if there is one left; `false` means do not retry.
    pub(crate) fn try_withdraw(&mut self, now: Instant) -> bool {
        if self.allows(now) {
            self.slot(now).retries += 1;
            true
        } else {
            false
        }
    }

    /// Retries the window allows for `calls` calls in it (whole retries; the epsilon
    /// keeps 0.2 × 110 from landing on 21.999…).
    fn allowed(&self, calls: u64) -> u64 {
        let exact = self.ratio * calls as f64 + self.floor_per_s * WINDOW.as_secs_f64();
        (exact + 1e-9).floor() as u64
    }

    /// `(calls, retries)` in the window ending at `now`.
    fn totals(&self, now: Instant) -> (u64, u64) {
        let current = self.second(now);
        self.slots
            .iter()
            .filter(|s| s.second + (SLOTS as u64) > current && s.second <= current)
            .fold((0, 0), |(c, r), s| (c + s.calls, r + s.retries))
    }

    fn second(&self, now: Instant) -> u64 {
        (now.saturating_duration_since(self.origin).as_millis() / SLOT.as_millis()) as u64
    }

    fn slot(&mut self, now: Instant) -> &mut Slot {
        let second = self.second(now);
        let slot = &mut self.slots[(second % SLOTS as u64) as usize];
        if slot.second != second {
            *slot = Slot {
                second,
                calls: 0,
                retries: 0,
            };
        }
        slot
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Withdraws until refused; returns how many retries were granted.
    fn drain(b: &mut RetryBudget, now: Instant) -> u32 {
        let mut n = 0;
        while b.try_withdraw(now) {
            n += 1;
            assert!(n < 100_000, "the budget never ran out");
        }
        n
    }

    #[test]
    fn floor_alone_allows_its_rate_over_the_window() {
        let t = Instant::now();
        let mut b = RetryBudget::new(0.2, 3.0, t);
        // No calls at all: 3/s over 10 s.
        assert_eq!(drain(&mut b, t), 30);
        // Still exhausted a little later: the retries are in the window.
        assert!(!b.try_withdraw(t + Duration::from_secs(5)));
    }

    #[test]
    fn ratio_adds_a_share_of_the_calls() {
        let t = Instant::now();
        let mut b = RetryBudget::new(0.2, 0.0, t);
        for _ in 0..100 {
            b.record_call(t);
        }
        assert_eq!(drain(&mut b, t), 20);
        for _ in 0..10 {
            b.record_call(t);
        }
        assert_eq!(drain(&mut b, t), 2, "20 % of the 10 new calls");
    }

    #[test]
    fn ratio_and_floor_add_up() {
        let t = Instant::now();
        let mut b = RetryBudget::new(0.1, 0.5, t);
        for _ in 0..50 {
            b.record_call(t);
        }
        // 0.1 × 50 + 0.5 × 10
        assert_eq!(drain(&mut b, t), 10);
    }

    #[test]
    fn old_calls_and_retries_leave_the_window() {
        let t = Instant::now();
        let mut b = RetryBudget::new(0.5, 0.0, t);
        for _ in 0..10 {
            b.record_call(t);
        }
        assert_eq!(drain(&mut b, t), 5);
        // 9.9 s later the calls still count (and so do the retries): nothing new.
        let later = t + Duration::from_millis(9900);
        assert!(!b.try_withdraw(later));
        // 10 s later both have left the window: nothing allowed without new calls...
        let after = t + WINDOW;
        assert!(!b.try_withdraw(after));
        // ...and new calls earn retries again.
        for _ in 0..4 {
            b.record_call(after);
        }
        assert_eq!(drain(&mut b, after), 2);
    }

    #[test]
    fn a_ring_slot_is_reused_only_after_a_full_window() {
        let t = Instant::now();
        let mut b = RetryBudget::new(1.0, 0.0, t);
        b.record_call(t);
        // Same slot index, ten seconds on: the old count is dropped, not added.
        let t10 = t + Duration::from_secs(10);
        b.record_call(t10);
        assert_eq!(drain(&mut b, t10), 1);
        // Calls spread over the window all count.
        let mut b = RetryBudget::new(1.0, 0.0, t);
        for s in 0..10 {
            b.record_call(t + Duration::from_secs(s));
        }
        assert_eq!(drain(&mut b, t + Duration::from_millis(9500)), 10);
    }

    #[test]
    fn zero_budget_never_retries() {
        let t = Instant::now();
        let mut b = RetryBudget::new(0.0, 0.0, t);
        for _ in 0..1000 {
            b.record_call(t);
        }
        assert!(!b.try_withdraw(t));
    }
}
