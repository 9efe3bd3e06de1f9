//! The `client:` section: how this instance calls other roles.
//!
//! `client.defaults` applies to every dependency; `client.dependencies.<role>` changes
//! any of its keys for calls to that role only. Every policy is checked as it applies
//! after inheritance, so a dependency that sets only `backoff_max` is checked against
//! the inherited `backoff_base`.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{ConfigError, PlatformConfig};
use crate::manifest::RoleCatalog;

/// How this instance calls other roles (see `src/platform/client/`). `defaults`
/// applies to every dependency; `dependencies.<role>` changes any of its keys for calls
/// to that role only (the role must exist, checked at start-up).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ClientSettings {
    pub defaults: CallPolicy,
    pub dependencies: BTreeMap<String, CallPolicyOverrides>,
}

/// The resilience policy of calls to one dependency.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallPolicy {
    /// Deadline of a whole call, retries included; what is left of it is passed on to
    /// the callee, which stops working when it runs out.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Limit of one attempt that another may follow (an idempotent call with attempts
    /// left), so a stalled instance costs this much before the call moves on. The last
    /// possible attempt always gets whatever is left of `timeout`. Unset: no separate
    /// limit, each attempt may use all that is left.
    #[serde(with = "humantime_serde")]
    pub attempt_timeout: Option<Duration>,
    /// Attempts per call, the first included (1: never retry).
    pub max_attempts: u32,
    /// Retries may add at most this share of the calls of the last 10 s...
    pub retry_budget_ratio: f64,
    /// ...plus this many per second, so a quiet dependency may still retry.
    pub retry_budget_floor_per_s: f64,
    /// Pause before the first retry (jittered), doubling per retry up to `backoff_max`.
    #[serde(with = "humantime_serde")]
    pub backoff_base: Duration,
    #[serde(with = "humantime_serde")]
    pub backoff_max: Duration,
    /// Consecutive failures (no connection, timeout, 500/502/504) that eject an
    /// instance; a refused connection ejects it at once.
    pub eject_after_failures: u32,
    /// How long the first ejection lasts; then one call probes the instance, and each
    /// failed probe doubles the time, up to `eject_max`.
    #[serde(with = "humantime_serde")]
    pub eject_base: Duration,
    #[serde(with = "humantime_serde")]
    pub eject_max: Duration,
    /// Calls in flight to the dependency; beyond it a call fails at once (503 at the edge).
    pub max_concurrency: usize,
}

impl Default for CallPolicy {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(5),
            attempt_timeout: None,
            max_attempts: 3,
            retry_budget_ratio: 0.2,
            retry_budget_floor_per_s: 3.0,
            backoff_base: Duration::from_millis(25),
            backoff_max: Duration::from_millis(500),
            eject_after_failures: 5,
            eject_base: Duration::from_secs(1),
            eject_max: Duration::from_secs(30),
            max_concurrency: 256,
        }
    }
}

/// Per-dependency changes to [`CallPolicy`]: every key optional, the rest inherited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CallPolicyOverrides {
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub attempt_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub retry_budget_floor_per_s: Option<f64>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub backoff_base: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub backoff_max: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub eject_after_failures: Option<u32>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub eject_base: Option<Duration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub eject_max: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<usize>,
}

impl CallPolicy {
    /// This policy with the keys `o` sets replaced.
    pub fn with(&self, o: &CallPolicyOverrides) -> CallPolicy {
        CallPolicy {
            timeout: o.timeout.unwrap_or(self.timeout),
            attempt_timeout: o.attempt_timeout.or(self.attempt_timeout),
            max_attempts: o.max_attempts.unwrap_or(self.max_attempts),
            retry_budget_ratio: o.retry_budget_ratio.unwrap_or(self.retry_budget_ratio),
            retry_budget_floor_per_s: o
                .retry_budget_floor_per_s
                .unwrap_or(self.retry_budget_floor_per_s),
            backoff_base: o.backoff_base.unwrap_or(self.backoff_base),
            backoff_max: o.backoff_max.unwrap_or(self.backoff_max),
            eject_after_failures: o.eject_after_failures.unwrap_or(self.eject_after_failures),
            eject_base: o.eject_base.unwrap_or(self.eject_base),
            eject_max: o.eject_max.unwrap_or(self.eject_max),
            max_concurrency: o.max_concurrency.unwrap_or(self.max_concurrency),
        }
    }

    /// Checks the values; `prefix` is the key of this policy, e.g. `client.defaults`.
    pub(super) fn check(&self, origin: &str, prefix: &str) -> Result<(), ConfigError> {
        let err = |key: &str, reason: String| {
            Err(ConfigError::new(origin, &format!("{prefix}.{key}"), reason))
        };
        let show = |d: Duration| humantime::format_duration(d).to_string();
        if self.timeout.is_zero() {
            return err("timeout", "expected more than 0".into());
        }
        if self.attempt_timeout.is_some_and(|t| t.is_zero()) {
            return err("attempt_timeout", "expected more than 0".into());
        }
        if !(1..=10).contains(&self.max_attempts) {
            return err("max_attempts", "expected 1 to 10".into());
        }
        if !(0.0..=1.0).contains(&self.retry_budget_ratio) {
            return err("retry_budget_ratio", "expected 0 to 1".into());
        }
        if !(0.0..=1000.0).contains(&self.retry_budget_floor_per_s) {
            return err("retry_budget_floor_per_s", "expected 0 to 1000".into());
        }
        if self.backoff_base.is_zero() {
            return err("backoff_base", "expected more than 0".into());
        }
        if self.backoff_max < self.backoff_base {
            let base = show(self.backoff_base);
            return err(
                "backoff_max",
                format!("expected at least backoff_base ({base})"),
            );
        }
        if self.eject_after_failures == 0 {
            return err("eject_after_failures", "expected at least 1".into());
        }
        if self.eject_base.is_zero() {
            return err("eject_base", "expected more than 0".into());
        }
        if self.eject_max < self.eject_base {
            let base = show(self.eject_base);
            return err(
                "eject_max",
                format!("expected at least eject_base ({base})"),
            );
        }
        if !(1..=100_000).contains(&self.max_concurrency) {
            return err("max_concurrency", "expected 1 to 100000".into());
        }
        Ok(())
    }
}

impl ClientSettings {
    /// The policy of calls to `role`.
    pub fn policy(&self, role: &str) -> CallPolicy {
        match self.dependencies.get(role) {
            Some(o) => self.defaults.with(o),
            None => self.defaults.clone(),
        }
    }
}

impl PlatformConfig {
    /// The client settings in force: `client`, with the deprecated `http.call_timeout`
    /// (when set) as the default timeout.
    pub fn client_settings(&self) -> ClientSettings {
        let mut settings = self.client.clone();
        if let Some(timeout) = self.http.call_timeout {
            settings.defaults.timeout = timeout;
        }
        settings
    }

    /// Checks every call policy, as it applies after inheritance.
    pub(super) fn check_client(&self, origin: &str) -> Result<(), ConfigError> {
        let settings = self.client_settings();
        settings.defaults.check(origin, "client.defaults")?;
        for role in settings.dependencies.keys() {
            let prefix = format!("client.dependencies.{role}");
            crate::ids::check_id("role name", role)
                .map_err(|reason| ConfigError::new(origin, &prefix, reason))?;
            settings.policy(role).check(origin, &prefix)?;
        }
        Ok(())
    }

    /// Each `client.dependencies` key must name a role that can be called.
    pub fn check_client_dependencies(
        &self,
        origin: &str,
        catalog: &RoleCatalog,
    ) -> Result<(), ConfigError> {
        for role in self.client.dependencies.keys() {
            if !catalog.get(role).is_some_and(|m| m.registers) {
                let callable: Vec<&str> = catalog
                    .iter()
                    .filter(|m| m.registers)
                    .map(|m| m.name.as_str())
                    .collect();
                return Err(ConfigError::new(
                    origin,
                    &format!("client.dependencies.{role}"),
                    format!(
                        "not a role that can be called; roles: {}",
                        callable.join(", ")
                    ),
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::manifest::Manifest;

    #[test]
    fn dependencies_inherit_the_defaults_and_change_what_they_set() {
        let c = PlatformConfig::parse(
            "client:\n  defaults:\n    timeout: 2s\n    max_attempts: 2\n  dependencies:\n    inventory: { timeout: 1s, attempt_timeout: 300ms }\n",
            "f",
        )
        .unwrap();
        c.validate("f").unwrap();
        let s = c.client_settings();
        let inventory = s.policy("inventory");
        assert_eq!(inventory.timeout, Duration::from_secs(1));
        assert_eq!(inventory.attempt_timeout, Some(Duration::from_millis(300)));
        assert_eq!(inventory.max_attempts, 2, "inherited from defaults");
        assert_eq!(s.policy("payments").timeout, Duration::from_secs(2));
        assert_eq!(s.policy("payments").attempt_timeout, None);
    }

    #[test]
    fn the_old_call_timeout_still_sets_the_default_timeout() {
        let c = PlatformConfig::parse("http:\n  call_timeout: 500ms\n", "f").unwrap();
        c.validate("f").unwrap();
        let s = c.client_settings();
        assert_eq!(s.policy("inventory").timeout, Duration::from_millis(500));
        assert_eq!(
            PlatformConfig::default().client_settings().defaults.timeout,
            Duration::from_secs(5)
        );
    }

    #[test]
    fn bad_values_name_the_key() {
        for (yaml, key) in [
            (
                "client:\n  defaults:\n    timeout: 0s\n",
                "client.defaults.timeout",
            ),
            (
                "client:\n  defaults:\n    max_attempts: 0\n",
                "client.defaults.max_attempts",
            ),
            (
                "client:\n  defaults:\n    retry_budget_ratio: 1.5\n",
                "client.defaults.retry_budget_ratio",
            ),
            (
                "client:\n  dependencies:\n    orders: { backoff_max: 10ms }\n",
                "client.dependencies.orders.backoff_max",
            ),
            (
                "client:\n  dependencies:\n    orders: { eject_base: 1m }\n",
                "client.dependencies.orders.eject_max",
            ),
            (
                "client:\n  dependencies:\n    orders: { max_concurrency: 0 }\n",
                "client.dependencies.orders.max_concurrency",
            ),
        ] {
            let c = PlatformConfig::parse(yaml, "f").unwrap();
            assert_eq!(c.validate("f").unwrap_err().key, key, "{yaml}");
        }
    }

    #[test]
    fn unknown_keys_and_roles_are_errors() {
        let e = PlatformConfig::parse(
            "client:\n  dependencies:\n    orders: { timout: 1s }\n",
            "f",
        )
        .unwrap_err();
        assert!(e.key.starts_with("client.dependencies.orders"), "{e}");
        assert!(e.reason.contains("unknown field `timout`"), "{e}");

        let manifest = |name: &str| Manifest {
            name: name.into(),
            description: String::new(),
            port: 0,
            stateful: false,
            registers: name != "registry",
            calls: Vec::new(),
            publishes: Vec::new(),
            consumes: Vec::new(),
            endpoints: Default::default(),
            public: false,
        };
        let catalog = RoleCatalog::new(vec![
            manifest("registry"),
            manifest("gateway"),
            manifest("orders"),
        ])
        .unwrap();
        let c = PlatformConfig::parse(
            "client:\n  dependencies:\n    ordres: { timeout: 1s }\n",
            "f",
        )
        .unwrap();
        let e = c
            .check_for_role("f", &manifest("gateway"), &catalog)
            .unwrap_err();
        assert_eq!(e.key, "client.dependencies.ordres");
        assert!(e.reason.contains("gateway, orders"), "{e}");
        let c = PlatformConfig::parse(
            "client:\n  dependencies:\n    orders: { timeout: 1s }\n",
            "f",
        )
        .unwrap();
        c.check_for_role("f", &manifest("gateway"), &catalog)
            .unwrap();
    }
}
