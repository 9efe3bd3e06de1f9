//! How long to wait before restarting a child that exited.
//!
//! Exponential ([`svc_platform::backoff`], exact): 250 ms, doubling up to 10 s, so a
//! crash loop does not spin the machine while a one-off crash comes back almost at
//! once. A child that stayed up for 30 s counts as healthy and its next crash starts
//! again from 250 ms. No jitter: one supervisor restarting its own children has no
//! crowd to spread out, and a predictable wait is easier to read in its log.

use std::time::Duration;

use svc_platform::backoff::Backoff;

const FIRST: Duration = Duration::from_millis(250);
const RESTART: Backoff = Backoff::new(FIRST, Duration::from_secs(10));
const HEALTHY_UPTIME: Duration = Duration::from_secs(30);

/// The restart pacing of one child.
#[derive(Debug, Default)]
pub struct RestartBackoff {
    /// Crashes since the child last stayed up long enough to count as healthy.
    crashes: u32,
}

impl RestartBackoff {
    /// The delay before the next start, given how long the last run stayed up.
    pub fn after_run(&mut self, uptime: Duration) -> Duration {
        if uptime >= HEALTHY_UPTIME {
            self.crashes = 0;
        }
        self.crashes = self.crashes.saturating_add(1);
        RESTART.exact(self.crashes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap() {
        let mut backoff = RestartBackoff::default();
        let delays: Vec<u128> = (0..8)
            .map(|_| backoff.after_run(Duration::from_secs(1)).as_millis())
            .collect();
        assert_eq!(delays, [250, 500, 1000, 2000, 4000, 8000, 10000, 10000]);
    }

    #[test]
    fn a_long_run_resets_it() {
        let mut backoff = RestartBackoff::default();
        for _ in 0..5 {
            backoff.after_run(Duration::ZERO);
        }
        assert_eq!(backoff.after_run(HEALTHY_UPTIME), FIRST);
        assert_eq!(backoff.after_run(Duration::ZERO), FIRST * 2);
    }
}
