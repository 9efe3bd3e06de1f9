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

/// Exponential backoff from `base` (more than 0), capped at `max` (at least `base`).
/// Configured ones are checked at load ([`Backoff::checked`]), so a running loop never
/// sees a zero or shrinking backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    base: Duration,
    max: Duration,
}

/// Why two durations make no [`Backoff`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub(crate) enum BackoffError {
    #[error("expected more than 0")]
    ZeroBase,
    /// `max` is below `base` (the error names the key of `base`, so it is the caller's).
    #[error("expected at least the base ({})", humantime::format_duration(*.base))]
    MaxBelowBase { base: Duration },
}

impl Backoff {
    /// A backoff from constants; an invalid pair fails the build (const evaluation).
    pub const fn new(base: Duration, max: Duration) -> Backoff {
        assert!(!base.is_zero(), "a backoff starts above zero");
        assert!(max.as_nanos() >= base.as_nanos(), "a backoff never shrinks");
        Backoff { base, max }
    }

    /// A backoff from configured values.
    pub(crate) fn checked(base: Duration, max: Duration) -> Result<Backoff, BackoffError> {
        if base.is_zero() {
            return Err(BackoffError::ZeroBase);
        }
        if max < base {
            return Err(BackoffError::MaxBelowBase { base });
        }
        Ok(Backoff { base, max })
    }

    /// The longest wait before the first retry.
    #[cfg(test)]
    pub(crate) fn base(&self) -> Duration {
        self.base
    }

    /// The longest wait before any retry.
    pub(crate) fn max(&self) -> Duration {
        self.max
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
        assert_eq!(
            b.exact(u32::MAX),
            b.max(),
            "no overflow however many retries"
        );
    }

    #[test]
    fn a_backoff_starts_above_zero_and_never_shrinks() {
        let b = Backoff::checked(25 * MS, 500 * MS).unwrap();
        assert_eq!((b.base(), b.max()), (25 * MS, 500 * MS));
        assert!(
            Backoff::checked(5 * MS, 5 * MS).is_ok(),
            "max may equal base"
        );
        assert_eq!(
            Backoff::checked(Duration::ZERO, 5 * MS),
            Err(BackoffError::ZeroBase)
        );
        assert_eq!(
            Backoff::checked(25 * MS, 10 * MS),
            Err(BackoffError::MaxBelowBase { base: 25 * MS })
        );
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
