//! The `registry:` section: what the registry applies to every lease it grants.
//!
//! Only registry instances read it, but every instance's file is checked whole, so a
//! lease TTL the renewals cannot keep up with stops start-up wherever it is written.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use svc_platform::config::{ConfigError, PositiveDuration};

/// Settings the registry role applies to every lease it grants.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// An instance that has not renewed for this long is evicted.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often instances are told to renew. At most half of `lease_ttl`.
    pub renew_interval: PositiveDuration,
    /// Upper bound of a blocking query's `wait`.
    pub max_wait: PositiveDuration,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(3),
            renew_interval: PositiveDuration::from_secs(1),
            max_wait: PositiveDuration::from_secs(60),
        }
    }
}

impl RegistrySettings {
    /// Checks what the types alone do not: a lease long enough to time, and a renewal
    /// that fits twice in it.
    pub fn check(&self, origin: &str) -> Result<(), ConfigError> {
        if self.lease_ttl < Duration::from_millis(100) {
            return Err(ConfigError::new(
                origin,
                "registry.lease_ttl",
                "expected at least 100ms",
            ));
        }
        if self.renew_interval.get() * 2 > self.lease_ttl {
            return Err(ConfigError::new(
                origin,
                "registry.renew_interval",
                format!(
                    "expected at most half of registry.lease_ttl ({})",
                    humantime::format_duration(self.lease_ttl)
                ),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::config::Config;

    #[test]
    fn defaults() {
        let c = Config::parse("", "f.yaml").unwrap();
        assert_eq!(c.registry.lease_ttl, Duration::from_secs(3));
        c.validate("f.yaml").unwrap();
    }

    #[test]
    fn durations_are_humantime() {
        let c = Config::parse(
            "registry:\n  lease_ttl: 500ms\n  renew_interval: 200ms\n",
            "f",
        )
        .unwrap();
        assert_eq!(c.registry.lease_ttl, Duration::from_millis(500));
        c.validate("f").unwrap();
    }

    #[test]
    fn bad_duration_names_the_key() {
        let e = Config::parse("registry:\n  lease_ttl: soon\n", "svc.yaml").unwrap_err();
        assert_eq!(e.file, "svc.yaml");
        assert_eq!(e.key, "registry.lease_ttl");
    }

    #[test]
    fn renew_must_fit_in_ttl() {
        let c = Config::parse("registry:\n  lease_ttl: 1s\n  renew_interval: 1s\n", "f").unwrap();
        let e = c.validate("f").unwrap_err();
        assert_eq!(e.key, "registry.renew_interval");
    }
}
