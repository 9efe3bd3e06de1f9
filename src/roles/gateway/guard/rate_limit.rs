//! Per-key rate limiting: one token bucket per API key name.
//!
//! A bucket holds at most `burst` tokens, starts full and refills continuously at
//! `per_second`; each request takes one token, and a request that finds less than one
//! is refused with the time until the next token ([`RetryAfter`]). Guarantees:
//! - at most `burst + per_second × t` requests of one key pass in any window `t`;
//! - the answer depends only on the key's past requests and the `now` passed in (no
//!   clock is read here), so the tests drive time with explicit `Instant`s;
//! - memory is bounded by the configured keys: only authenticated names reach it, and
//!   when the keys are reloaded ([`RateLimiter::set_rates`]) the buckets of removed keys
//!   go while those of the keys that stay keep their tokens;
//! - a time earlier than the last one seen (a caller's stale `now`) refills nothing
//!   rather than panicking.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use parking_lot::{Mutex, RwLock};

/// A bucket's shape: refill rate and capacity.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    pub per_second: f64,
    pub burst: u32,
}

/// How long to wait before the key has a token again. [`RetryAfter::whole_seconds`] is
/// what goes into a `Retry-After` header: rounded up, at least 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryAfter(pub Duration);

impl RetryAfter {
    /// Whole seconds, rounded up (so a client that waits this long finds a token), ≥ 1.
    pub fn whole_seconds(self) -> u64 {
        let secs = self.0.as_secs() + u64::from(self.0.subsec_nanos() > 0);
        secs.max(1)
    }
}

/// Tokens short of one that still count as one.
const TOLERANCE: f64 = 1e-9;

#[derive(Debug)]
struct Bucket {
    tokens: f64,
    updated: Instant,
}

/// Token buckets by key name; shared by every worker of the gateway.
#[derive(Debug)]
pub struct RateLimiter {
    default: Rate,
    rates: RwLock<HashMap<String, Rate>>,
    buckets: Mutex<HashMap<String, Bucket>>,
}

impl RateLimiter {
    /// A limiter giving every key `default`, unless [`RateLimiter::with_rate`] says else.
    pub fn new(default: Rate) -> RateLimiter {
        RateLimiter {
            default,
            rates: RwLock::new(HashMap::new()),
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Gives the key `name` a rate of its own.
    pub fn with_rate(mut self, name: &str, rate: Rate) -> RateLimiter {
        self.rates.get_mut().insert(name.to_string(), rate);
        self
    }

    /// The rate every key has unless it has its own.
    pub fn default_rate(&self) -> Rate {
        self.default
    }

    /// After a reload of the keys: `rates` are the keys' own rates from now on, and
    /// only the keys named in `known` keep a bucket.
    pub fn set_rates(&self, rates: HashMap<String, Rate>, known: &HashSet<&str>) {
        *self.rates.write() = rates;
        self.buckets
            .lock()
            .retain(|name, _| known.contains(name.as_str()));
    }

    /// The rate of `name`.
    pub fn rate(&self, name: &str) -> Rate {
        self.rates.read().get(name).copied().unwrap_or(self.default)
    }

    /// Takes a token from `name`'s bucket at `now`, or says how long until there is one.
    pub fn try_take(&self, name: &str, now: Instant) -> Result<(), RetryAfter> {
        let rate = self.rate(name);
        let capacity = f64::from(rate.burst);
        let mut buckets = self.buckets.lock();
        // The name is copied only the first time the key is seen.
        if !buckets.contains_key(name) {
            let full = Bucket {
                tokens: capacity,
                updated: now,
            };
            buckets.insert(name.to_string(), full);
        }
        let Some(bucket) = buckets.get_mut(name) else {
            unreachable!("inserted above under the same lock");
        };
        let elapsed = now.saturating_duration_since(bucket.updated).as_secs_f64();
        bucket.tokens = (bucket.tokens + elapsed * rate.per_second).min(capacity);
        bucket.updated = bucket.updated.max(now);
        // The tolerance makes waiting exactly the time we said always enough, whatever
        // the rounding of the float arithmetic.
        if bucket.tokens >= 1.0 - TOLERANCE {
            bucket.tokens = (bucket.tokens - 1.0).max(0.0);
            return Ok(());
        }
        let wait = (1.0 - bucket.tokens) / rate.per_second;
        Err(RetryAfter(Duration::from_secs_f64(wait)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limiter(per_second: f64, burst: u32) -> RateLimiter {
        RateLimiter::new(Rate { per_second, burst })
    }

    #[test]
    fn a_full_bucket_lets_the_burst_through_then_refuses() {
        let l = limiter(2.0, 3);
        let t0 = Instant::now();
        for i in 0..3 {
            assert_eq!(l.try_take("shop", t0), Ok(()), "request {i}");
        }
        let RetryAfter(wait) = l.try_take("shop", t0).unwrap_err();
        assert!(
            wait > Duration::from_millis(499) && wait < Duration::from_millis(501),
            "{wait:?}"
        );
        // Another key has its own bucket.
        assert_eq!(l.try_take("admin", t0), Ok(()));
    }

    #[test]
    fn tokens_come_back_at_the_rate_and_never_beyond_the_burst() {
        let l = limiter(2.0, 3);
        let t0 = Instant::now();
        for _ in 0..3 {
            l.try_take("shop", t0).unwrap();
        }
        // 0.4 s: 0.8 tokens, not enough; waiting what it says is.
        let wait = l
            .try_take("shop", t0 + Duration::from_millis(400))
            .unwrap_err();
        assert!(wait.0 <= Duration::from_millis(100), "{wait:?}");
        let t1 = t0 + Duration::from_millis(400) + wait.0;
        assert_eq!(l.try_take("shop", t1), Ok(()));
        assert!(l.try_take("shop", t1).is_err());
        // A long pause refills to the burst, no more.
        let t2 = t1 + Duration::from_secs(3600);
        for _ in 0..3 {
            l.try_take("shop", t2).unwrap();
        }
        assert!(l.try_take("shop", t2).is_err());
    }

    #[test]
    fn a_time_in_the_past_refills_nothing() {
        let l = limiter(1.0, 1);
        let t0 = Instant::now() + Duration::from_secs(10);
        l.try_take("shop", t0).unwrap();
        assert!(l.try_take("shop", t0 - Duration::from_secs(5)).is_err());
        // ...and does not move the bucket's clock back.
        assert_eq!(l.try_take("shop", t0 + Duration::from_secs(1)), Ok(()));
    }

    #[test]
    fn a_key_can_have_its_own_rate() {
        let l = limiter(1.0, 1).with_rate(
            "bulk",
            Rate {
                per_second: 100.0,
                burst: 10,
            },
        );
        let t0 = Instant::now();
        for _ in 0..10 {
            l.try_take("bulk", t0).unwrap();
        }
        assert!(l.try_take("bulk", t0).unwrap_err().0 <= Duration::from_millis(10));
        l.try_take("shop", t0).unwrap();
        assert!(l.try_take("shop", t0).is_err());
    }

    #[test]
    fn new_rates_keep_the_buckets_of_keys_that_stay() {
        let l = limiter(1.0, 1);
        let t0 = Instant::now();
        l.try_take("shop", t0).unwrap();
        l.try_take("gone", t0).unwrap();
        let bulk = Rate {
            per_second: 1.0,
            burst: 5,
        };
        l.set_rates(
            HashMap::from([("bulk".to_string(), bulk)]),
            &HashSet::from(["shop", "bulk"]),
        );
        assert_eq!(l.rate("bulk"), bulk);
        assert_eq!(l.rate("shop"), l.default_rate());
        // `shop` still has its empty bucket; `gone` starts afresh if it comes back.
        assert!(l.try_take("shop", t0).is_err());
        assert_eq!(l.try_take("gone", t0), Ok(()));
        for _ in 0..5 {
            l.try_take("bulk", t0).unwrap();
        }
        assert!(l.try_take("bulk", t0).is_err());
    }

    #[test]
    fn retry_after_is_rounded_up_to_whole_seconds_and_at_least_one() {
        let secs = |d: Duration| RetryAfter(d).whole_seconds();
        assert_eq!(secs(Duration::ZERO), 1);
        assert_eq!(secs(Duration::from_millis(1)), 1);
        assert_eq!(secs(Duration::from_secs(1)), 1);
        assert_eq!(secs(Duration::from_millis(1001)), 2);
        assert_eq!(secs(Duration::from_millis(2500)), 3);
        // A slow key: 0.1 per second means ten seconds for the next token.
        let l = limiter(0.1, 1);
        let t0 = Instant::now();
        l.try_take("slow", t0).unwrap();
        assert_eq!(l.try_take("slow", t0).unwrap_err().whole_seconds(), 10);
    }
}
