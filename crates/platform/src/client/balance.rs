//! Balancing: power of two choices over the instances a call may go to.
//!
//! Each instance carries a [`Load`]: the calls this process has outstanding on it and a
//! peak-sensitive moving average of its answer latency. Its cost is
//! `(outstanding + 1) × latency`. [`p2c`] draws two distinct candidates at random and
//! takes the cheaper (a tie is broken at random). Two random draws rather than the
//! global minimum, so that callers acting on the same stale numbers do not all herd
//! onto one instance; and the outstanding count makes an instance that stalls look
//! expensive as soon as calls pile up on it, long before any of them times out.
//!
//! The latency average:
//! - jumps to a slower answer at once (peak-sensitive: one slow answer is news) and
//!   follows faster ones gradually;
//! - decays toward zero while an instance is not used ([`DECAY`]), so an instance that
//!   was slow once is tried again later instead of being starved forever;
//! - learns only from answers (any status). Failures without an answer (timeouts,
//!   refused or broken connections) are the circuit breaker's business; counting a
//!   timeout as a latency would make the balancer starve a stalled instance of exactly
//!   the calls the breaker needs to decide that it is stalled.

use std::time::{Duration, Instant};

use rand::Rng;

/// Time constant of the latency average: an observation this old weighs 1/e.
const DECAY: Duration = Duration::from_secs(10);

/// Latency assumed for a new instance when no other instance has been measured.
pub(crate) const DEFAULT_LATENCY: Duration = Duration::from_millis(10);

#[derive(Debug, Clone)]
pub(crate) struct Load {
    outstanding: u32,
    /// Seconds.
    latency: f64,
    updated: Instant,
}

impl Load {
    /// A new instance, assumed as fast as `initial` until it answers.
    pub(crate) fn new(initial: Duration, now: Instant) -> Load {
        Load {
            outstanding: 0,
            latency: initial.as_secs_f64(),
            updated: now,
        }
    }

    pub(crate) fn start(&mut self) {
        self.outstanding = self.outstanding.saturating_add(1);
    }

    pub(crate) fn end(&mut self) {
        self.outstanding = self.outstanding.saturating_sub(1);
    }

    /// Folds in the latency of an answer received at `now`.
    pub(crate) fn observe(&mut self, latency: Duration, now: Instant) {
        let observed = latency.as_secs_f64();
        let current = self.latency_at(now);
        self.latency = if observed > current {
            observed
        } else {
            let w = weight(now.saturating_duration_since(self.updated));
            current * w + observed * (1.0 - w)
        };
        self.updated = now;
    }

    /// The latency estimate at `now`, decayed since the last answer.
    pub(crate) fn latency_at(&self, now: Instant) -> f64 {
        self.latency * weight(now.saturating_duration_since(self.updated))
    }

    /// What sending one more call costs: `(outstanding + 1) × latency`.
    pub(crate) fn cost(&self, now: Instant) -> f64 {
        (f64::from(self.outstanding) + 1.0) * self.latency_at(now)
    }
}

/// How much of the old estimate remains after `elapsed`.
fn weight(elapsed: Duration) -> f64 {
    (-elapsed.as_secs_f64() / DECAY.as_secs_f64()).exp()
}

/// Power of two choices: the index of the cheaper of two distinct random candidates.
pub(crate) fn p2c(costs: &[f64], rng: &mut impl Rng) -> Option<usize> {
    match costs.len() {
        0 => None,
        1 => Some(0),
        n => {
            let a = rng.random_range(0..n);
            let mut b = rng.random_range(0..n - 1);
            if b >= a {
                b += 1;
            }
            Some(if costs[a] < costs[b] {
                a
            } else if costs[b] < costs[a] {
                b
            } else if rng.random_bool(0.5) {
                a
            } else {
                b
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{rngs::StdRng, SeedableRng};

    const MS: Duration = Duration::from_millis(1);

    fn picks(costs: &[f64], rounds: usize) -> Vec<usize> {
        let mut rng = StdRng::seed_from_u64(7);
        let mut counts = vec![0; costs.len()];
        for _ in 0..rounds {
            counts[p2c(costs, &mut rng).unwrap()] += 1;
        }
        counts
    }

    #[test]
    fn two_candidates_the_cheaper_always_wins() {
        assert_eq!(picks(&[2.0, 1.0], 1000), vec![0, 1000]);
        assert_eq!(p2c(&[], &mut StdRng::seed_from_u64(1)), None);
        assert_eq!(p2c(&[5.0], &mut StdRng::seed_from_u64(1)), Some(0));
    }

    #[test]
    fn the_most_expensive_is_never_chosen_and_ties_are_shared() {
        let counts = picks(&[3.0, 1.0, 2.0], 3000);
        assert_eq!(counts[0], 0, "{counts:?}");
        // The cheapest wins every draw it is in (2 of 3 pairs).
        assert!((1800..2200).contains(&counts[1]), "{counts:?}");
        let counts = picks(&[1.0, 1.0], 2000);
        assert!((800..1200).contains(&counts[0]), "{counts:?}");
    }

    #[test]
    fn outstanding_calls_raise_the_cost() {
        let t = Instant::now();
        let mut a = Load::new(10 * MS, t);
        let b = Load::new(10 * MS, t);
        a.start();
        a.start();
        assert!((a.cost(t) - 3.0 * b.cost(t)).abs() < 1e-12);
        a.end();
        a.end();
        a.end();
        assert_eq!(a.cost(t), b.cost(t), "never below zero outstanding");
    }

    #[test]
    fn latency_is_peak_sensitive_and_decays() {
        let t = Instant::now();
        let mut l = Load::new(10 * MS, t);
        // A slow answer counts at once.
        l.observe(200 * MS, t);
        assert!((l.latency_at(t) - 0.2).abs() < 1e-9);
        // A fast one a DECAY later pulls it down by 1 - 1/e of the difference...
        let later = t + DECAY;
        l.observe(10 * MS, later);
        let decayed = 0.2 / std::f64::consts::E;
        let expected = decayed / std::f64::consts::E + 0.01 * (1.0 - 1.0 / std::f64::consts::E);
        assert!(
            (l.latency_at(later) - expected).abs() < 1e-9,
            "{}",
            l.latency_at(later)
        );
        // ...and unused, the estimate fades so the instance gets tried again.
        assert!(l.latency_at(later + 5 * DECAY) < 0.001);
    }
}
