//! The concurrency limit: at most `max` calls in flight to one dependency.
//!
//! Beyond the limit a call fails at once ([`super::CallError::Overloaded`]) instead of
//! queueing: a dependency that already has `max` of our calls outstanding is slow or
//! stuck, and piling more on only grows the latency of all of them and the memory of
//! this process. Failing fast lets the edge answer 503 with `Retry-After`, which is
//! honest and cheap. The permit is held for the whole call (every attempt and backoff).

use std::sync::Arc;

use prometheus::IntGauge;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

#[derive(Debug, Clone)]
pub(crate) struct ConcurrencyLimit {
    semaphore: Arc<Semaphore>,
    max: usize,
    in_flight: IntGauge,
}

/// One call's place under the limit; dropping it frees the place.
#[derive(Debug)]
pub(crate) struct Permit {
    _permit: OwnedSemaphorePermit,
    in_flight: IntGauge,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.in_flight.dec();
    }
}

impl ConcurrencyLimit {
    /// `in_flight` is kept equal to the number of permits held.
    pub(crate) fn new(max: usize, in_flight: IntGauge) -> ConcurrencyLimit {
        let max = max.clamp(1, Semaphore::MAX_PERMITS);
        ConcurrencyLimit {
            semaphore: Arc::new(Semaphore::new(max)),
            max,
            in_flight,
        }
    }

    pub(crate) fn max(&self) -> usize {
        self.max
    }

    /// A place, or `None` if `max` calls are already in flight.
    pub(crate) fn try_acquire(&self) -> Option<Permit> {
        let permit = self.semaphore.clone().try_acquire_owned().ok()?;
        self.in_flight.inc();
        Some(Permit {
            _permit: permit,
            in_flight: self.in_flight.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fails_fast_beyond_the_limit_and_frees_on_drop() {
        let gauge = IntGauge::new("in_flight", "test").unwrap();
        let limit = ConcurrencyLimit::new(2, gauge.clone());
        let a = limit.try_acquire().unwrap();
        let b = limit.try_acquire().unwrap();
        assert_eq!(gauge.get(), 2);
        assert!(limit.try_acquire().is_none());
        drop(a);
        assert_eq!(gauge.get(), 1);
        let c = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
        drop((b, c));
        assert_eq!(gauge.get(), 0);
    }

    #[test]
    fn zero_means_one() {
        let limit = ConcurrencyLimit::new(0, IntGauge::new("g", "test").unwrap());
        assert_eq!(limit.max(), 1);
        let _held = limit.try_acquire().unwrap();
        assert!(limit.try_acquire().is_none());
    }
}
