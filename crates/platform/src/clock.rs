//! Wall-clock time as the system stores and sends it: Unix milliseconds.
//!
//! Timestamps written to redb and put on the wire (`created_at_ms`, `renewed_at_ms`,
//! `occurred_at_ms`) all come from [`now_ms`], so they share one unit and one epoch.
//! Durations and deadlines inside a process use `Instant` instead: the wall clock may
//! jump, and nothing that times out may depend on it.

use std::time::{SystemTime, UNIX_EPOCH};

/// Unix time in milliseconds; 0 if the system clock is set before 1970.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn is_unix_milliseconds() {
        // 2020-09-13 (1.6e12 ms) is long past; 1.6e15 ms would be seconds mistaken for µs.
        let now = now_ms();
        assert!(
            now > 1_600_000_000_000 && now < 1_600_000_000_000_000,
            "{now}"
        );
    }
}
