//! How long to wait before restarting a child that exited.
//!
//! Exponential: 250 ms, doubling up to 10 s, so a crash loop does not spin the machine
//! while a one-off crash comes back almost at once. A child that stayed up for 30 s
//! counts as healthy and its next crash starts again from 250 ms.

use std::time::Duration;

const FIRST: Duration = Duration::from_millis(250);
const CAP: Duration = Duration::from_secs(10);
const HEALTHY_UPTIME: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Backoff {
    next: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff { next: FIRST }
    }
}

impl Backoff {
    /// The delay before the next start, given how long the last run stayed up.
    pub fn after_run(&mut self, uptime: Duration) -> Duration {
        if uptime >= HEALTHY_UPTIME {
            self.next = FIRST;
        }
        let delay = self.next;
        self.next = (self.next * 2).min(CAP);
        delay
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut backoff = Backoff::default();
        let delays: Vec<u128> = (0..8)
            .map(|_| backoff.after_run(Duration::from_secs(1)).as_millis())
            .collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
    }

    #[test]
    fn a_long_run_resets_it() {
        let mut backoff = Backoff::default();
        for _ in 0..5 {
            backoff.after_run(Duration::ZERO);
        }
        assert_eq!(backoff.after_run(HEALTHY_UPTIME), FIRST);
        assert_eq!(backoff.after_run(Duration::ZERO), FIRST * 2);
    }
}
