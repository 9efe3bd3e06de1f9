//! Config values that are checked as they are parsed, so an invalid one cannot exist
//! past loading and the checks that remain are the relations between keys.
//!
//! - [`PositiveDuration`]: a humantime duration (`500ms`, `2s`) that is more than 0;
//!   `0s` fails the parse with "expected more than 0", which the loader reports with
//!   the file and the key.
//! - [`Backoff`](crate::backoff::Backoff): a doubling pause from `base` (more than 0) up to `max` (at least
//!   `base`), made from two keys by whoever knows their names.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A duration of more than zero, written like `500ms` or `2s`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct PositiveDuration(Duration);

/// The reason a zero duration is refused, as config errors give it.
pub(crate) const NOT_POSITIVE: &str = "expected more than 0";

impl PositiveDuration {
    /// `None` for zero.
    fn new(duration: Duration) -> Option<PositiveDuration> {
        (!duration.is_zero()).then_some(PositiveDuration(duration))
    }

    /// For built-in defaults; fails to compile (in a const) or panics when `secs` is 0.
    pub const fn from_secs(secs: u64) -> PositiveDuration {
        assert!(secs > 0, "a PositiveDuration is more than 0");
        PositiveDuration(Duration::from_secs(secs))
    }

    /// For built-in defaults; fails to compile (in a const) or panics when `millis` is 0.
    pub const fn from_millis(millis: u64) -> PositiveDuration {
        assert!(millis > 0, "a PositiveDuration is more than 0");
        PositiveDuration(Duration::from_millis(millis))
    }

    pub const fn get(self) -> Duration {
        self.0
    }
}

impl From<PositiveDuration> for Duration {
    fn from(d: PositiveDuration) -> Duration {
        d.0
    }
}

impl fmt::Display for PositiveDuration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        humantime::format_duration(self.0).fmt(f)
    }
}

impl Serialize for PositiveDuration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        humantime_serde::serialize(&self.0, serializer)
    }
}

impl<'de> Deserialize<'de> for PositiveDuration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let duration: Duration = humantime_serde::deserialize(deserializer)?;
        PositiveDuration::new(duration).ok_or_else(|| serde::de::Error::custom(NOT_POSITIVE))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(yaml: &str) -> Result<PositiveDuration, String> {
        serde_yaml::from_str(yaml).map_err(|e| e.to_string())
    }

    #[test]
    fn positive_durations_are_humantime_and_more_than_zero() {
        assert_eq!(parse("250ms"), Ok(PositiveDuration::from_millis(250)));
        assert_eq!(PositiveDuration::from_secs(2).get(), Duration::from_secs(2));
        let zero = parse("0s").unwrap_err();
        assert!(zero.contains(NOT_POSITIVE), "{zero}");
        assert!(parse("soon").is_err());
        assert_eq!(PositiveDuration::new(Duration::ZERO), None);
        let text = serde_yaml::to_string(&PositiveDuration::from_millis(1500)).unwrap();
        assert_eq!(text.trim(), "1s 500ms");
    }
}
