//! How long to wait before trying again: exponential backoff, jittered or exact.
//!
//! One formula for every loop that retries something (a call, an event delivery, a saga
//! step, the registry watch, a circuit breaker's ejection, a crashed child in `svc dev`):
//! retry `n` (1 for the first) waits up to `base × 2^(n-1)`, never more than `max`.
//!
//! [`Backoff::delay`] jitters that with *equal jitter*: a uniform point in the upper
//! half, `[ceiling/2, ceiling]`. Callers that failed together (every pending order after
//! an outage, every caller of a restarted instance) spread out instead of coming back in
//! lockstep, and yet none retries at once: full jitter (`[0, ceiling]`) would send some
//! of them straight back at a dependency that has just failed. [`Backoff::exact`] is the
//! ceiling itself, for waits that must stay predictable (a breaker's ejection, which is
//! reported as a `Retry-After`, and `svc dev`'s restarts).

use std::time::Duration;

use rand::Rng;

/// Exponential backoff from `base`, capped at `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The longest wait before the first retry.
    pub base: Duration,
    /// The longest wait before any retry.
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Backoff {
        Backoff { base, max }
    }

    /// The wait before retry `attempt` (1 for the first; 0 counts as 1), without jitter:
    /// `base × 2^(attempt-1)`, capped at `max`.
    pub fn exact(&self, attempt: u32) -> Duration {
        // 2^31 × any useful base is past every cap; the shift must not overflow.
        let doublings = attempt.saturating_sub(1).min(31);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }

    /// The wait before retry `attempt`, with equal jitter: between half of
    /// [`exact`](Self::exact) and all of it.
    pub fn delay(&self, attempt: u32, rng: &mut impl Rng) -> Duration {
        let ceiling = self.exact(attempt);
        let half = ceiling / 2;
        half + rng.random_range(Duration::ZERO..=ceiling - half)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    const MS: Duration = Duration::from_millis(1);

    #[test]
    fn exact_doubles_from_base_up_to_max() {
        let b = Backoff::new(250 * MS, 10_000 * MS);
        let waits: Vec<u128> = (1..=8).map(|n| b.exact(n).as_millis()).collect();
        assert_eq!(waits, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
        assert_eq!(b.exact(0), b.exact(1), "attempt 0 counts as the first");
        assert_eq!(b.exact(u32::MAX), b.max, "no overflow however many retries");
    }

    #[test]
    fn a_max_below_base_wins() {
        let b = Backoff::new(100 * MS, 30 * MS);
        assert_eq!(b.exact(1), 30 * MS);
    }

    #[test]
    fn delay_stays_in_the_upper_half_of_the_exact_wait() {
        let b = Backoff::new(20 * MS, 100 * MS);
        let mut rng = StdRng::seed_from_u64(3);
        for attempt in [1, 2, 3, 4, 30, u32::MAX] {
            let ceiling = b.exact(attempt);
            for _ in 0..200 {
                let d = b.delay(attempt, &mut rng);
                assert!(d >= ceiling / 2 && d <= ceiling, "{attempt}: {d:?}");
            }
        }
    }

    #[test]
    fn delay_is_jittered() {
        // Callers failing together must not come back together.
        let b = Backoff::new(100 * MS, 5_000 * MS);
        let mut rng = StdRng::seed_from_u64(7);
        let draws: std::collections::HashSet<_> = (0..50).map(|_| b.delay(3, &mut rng)).collect();
        assert!(draws.len() > 40, "{draws:?}");
    }

    #[test]
    fn the_same_seed_gives_the_same_delays() {
        let b = Backoff::new(100 * MS, 5_000 * MS);
        let draw = |seed| {
            let mut rng = StdRng::seed_from_u64(seed);
            (1..10).map(|n| b.delay(n, &mut rng)).collect::<Vec<_>>()
        };
        assert_eq!(draw(11), draw(11));
        assert_ne!(draw(11), draw(12));
    }
}
