//! The `client:` section: how this instance calls other roles.
//!
//! `client.defaults` applies to every dependency; `client.dependencies.<role>` changes
//! any of its keys for calls to that role only. The section as written
//! ([`ClientSettings`]) becomes the policies in force ([`ClientPolicies`]) at load:
//! each policy is checked as it applies after inheritance (a dependency that sets only
//! `backoff_max` is checked against the inherited `backoff_base`), and its pauses become
//! checked [`Backoff`]s, so the client never sees an invalid policy.

use std::collections::BTreeMap;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::values::PositiveDuration;
use super::{ConfigError, PlatformConfig};
use crate::backoff::Backoff;
use crate::manifest::RoleCatalog;

/// How this instance calls other roles (see `crates/platform/src/client/`), as
/// written. `defaults` applies to every dependency; `dependencies.<role>` changes any of
/// its keys for calls to that role only (the role must exist, checked at start-up).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ClientSettings {
    defaults: CallPolicySettings,
    dependencies: BTreeMap<String, CallPolicyOverrides>,
}

/// The resilience policy of calls to one dependency, as written (`client.defaults`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CallPolicySettings {
    /// Deadline of a whole call, retries included; what is left of it is passed on to
    /// the callee, which stops working when it runs out.
    timeout: PositiveDuration,
    /// Limit of one attempt that another may follow (an idempotent call with attempts
    /// left), so a stalled instance costs this much before the call moves on. The last
    /// possible attempt always gets whatever is left of `timeout`. Unset: no separate
    /// limit, each attempt may use all that is left.
    attempt_timeout: Option<PositiveDuration>,
    /// Attempts per call, the first included (1: never retry).
    max_attempts: u32,
    /// Retries may add at most this share of the calls of the last 10 s...
    retry_budget_ratio: f64,
    /// ...plus this many per second, so a quiet dependency may still retry.
    retry_budget_floor_per_s: f64,
    /// Pause before the first retry (jittered), doubling per retry up to `backoff_max`.
    backoff_base: PositiveDuration,
    #[serde(with = "humantime_serde")]
    backoff_max: Duration,
    /// Consecutive failures (no connection, timeout, 500/502/504) that eject an
    /// instance; a refused connection ejects it at once.
    eject_after_failures: u32,
    /// How long the first ejection lasts; then one call probes the instance, and each
    /// failed probe doubles the time, up to `eject_max`.
    eject_base: PositiveDuration,
    #[serde(with = "humantime_serde")]
    eject_max: Duration,
    /// Calls in flight to the dependency; beyond it a call fails at once (503 at the edge).
    max_concurrency: usize,
}

impl Default for CallPolicySettings {
    fn default() -> Self {
        Self {
            timeout: PositiveDuration::from_secs(5),
            attempt_timeout: None,
            max_attempts: 3,
            retry_budget_ratio: 0.2,
            retry_budget_floor_per_s: 3.0,
            backoff_base: PositiveDuration::from_millis(25),
            backoff_max: Duration::from_millis(500),
            eject_after_failures: 5,
            eject_base: PositiveDuration::from_secs(1),
            eject_max: Duration::from_secs(30),
            max_concurrency: 256,
        }
    }
}

/// Per-dependency changes to [`CallPolicySettings`]: every key optional, the rest
/// inherited.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct CallPolicyOverrides {
    #[serde(skip_serializing_if = "Option::is_none")]
    timeout: Option<PositiveDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    attempt_timeout: Option<PositiveDuration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_attempts: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_budget_ratio: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    retry_budget_floor_per_s: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    backoff_base: Option<PositiveDuration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    backoff_max: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eject_after_failures: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    eject_base: Option<PositiveDuration>,
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    eject_max: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    max_concurrency: Option<usize>,
}

/// The resilience policy of calls to one dependency, in force: checked, with its
/// pauses as [`Backoff`]s. See [`CallPolicySettings`] for what each value means.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct CallPolicy {
    pub(crate) timeout: Duration,
    pub(crate) attempt_timeout: Option<Duration>,
    pub(crate) max_attempts: u32,
    pub(crate) retry_budget_ratio: f64,
    pub(crate) retry_budget_floor_per_s: f64,
    /// Pause before a retry (jittered): `backoff_base` doubling up to `backoff_max`.
    pub(crate) backoff: Backoff,
    pub(crate) eject_after_failures: u32,
    /// How long an ejection lasts: `eject_base` doubling up to `eject_max`.
    pub(crate) eject: Backoff,
    pub(crate) max_concurrency: usize,
}

impl Default for CallPolicy {
    fn default() -> Self {
        CallPolicySettings::default()
            .check("built-in defaults", "client.defaults")
            .expect("the built-in call policy is valid (see tests)")
    }
}

impl CallPolicySettings {
    /// This policy with the keys `o` sets replaced.
    fn with(&self, o: &CallPolicyOverrides) -> CallPolicySettings {
        CallPolicySettings {
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

    /// The policy these values make, or what is wrong; `prefix` is the key of this
    /// policy, e.g. `client.defaults`.
    fn check(&self, origin: &str, prefix: &str) -> Result<CallPolicy, ConfigError> {
        let err = |key: &str, reason: String| {
            ConfigError::new(origin, &format!("{prefix}.{key}"), reason)
        };
        if !(1..=10).contains(&self.max_attempts) {
            return Err(err("max_attempts", "expected 1 to 10".into()));
        }
        if !(0.0..=1.0).contains(&self.retry_budget_ratio) {
            return Err(err("retry_budget_ratio", "expected 0 to 1".into()));
        }
        if !(0.0..=1000.0).contains(&self.retry_budget_floor_per_s) {
            return Err(err("retry_budget_floor_per_s", "expected 0 to 1000".into()));
        }
        let backoff = checked_backoff(self.backoff_base, self.backoff_max, "backoff_base")
            .map_err(|reason| err("backoff_max", reason))?;
        if self.eject_after_failures == 0 {
            return Err(err("eject_after_failures", "expected at least 1".into()));
        }
        let eject = checked_backoff(self.eject_base, self.eject_max, "eject_base")
            .map_err(|reason| err("eject_max", reason))?;
        if !(1..=100_000).contains(&self.max_concurrency) {
            return Err(err("max_concurrency", "expected 1 to 100000".into()));
        }
        Ok(CallPolicy {
            timeout: self.timeout.get(),
            attempt_timeout: self.attempt_timeout.map(PositiveDuration::get),
            max_attempts: self.max_attempts,
            retry_budget_ratio: self.retry_budget_ratio,
            retry_budget_floor_per_s: self.retry_budget_floor_per_s,
            backoff,
            eject_after_failures: self.eject_after_failures,
            eject,
            max_concurrency: self.max_concurrency,
        })
    }
}

/// The [`Backoff`] of a base key and a max key. The only way to fail is a max below
/// the base (the base is more than 0 by its type), so the reason is about the max key.
fn checked_backoff(
    base: PositiveDuration,
    max: Duration,
    base_key: &str,
) -> Result<Backoff, String> {
    Backoff::checked(base.get(), max).map_err(|_| format!("expected at least {base_key} ({base})"))
}

/// The call policies in force: one per dependency named in the config, and the
/// defaults for every other.
#[derive(Debug, Clone, PartialEq, Default)]
pub(crate) struct ClientPolicies {
    defaults: CallPolicy,
    dependencies: BTreeMap<String, CallPolicy>,
}

impl ClientPolicies {
    /// The policy of calls to `role`.
    pub(crate) fn policy(&self, role: &str) -> CallPolicy {
        self.dependencies
            .get(role)
            .unwrap_or(&self.defaults)
            .clone()
    }
}

impl PlatformConfig {
    /// The call policies in force: `client`, with the deprecated `http.call_timeout`
    /// (when set) as the default timeout, each checked as it applies after inheritance.
    pub(crate) fn client_policies(&self, origin: &str) -> Result<ClientPolicies, ConfigError> {
        let mut defaults = self.client.defaults.clone();
        if let Some(timeout) = self.http.call_timeout {
            defaults.timeout = timeout;
        }
        let mut policies = ClientPolicies {
            defaults: defaults.check(origin, "client.defaults")?,
            dependencies: BTreeMap::new(),
        };
        for (role, overrides) in &self.client.dependencies {
            let prefix = format!("client.dependencies.{role}");
            crate::ids::check_id("role name", role)
                .map_err(|reason| ConfigError::new(origin, &prefix, reason))?;
            let policy = defaults.with(overrides).check(origin, &prefix)?;
            policies.dependencies.insert(role.clone(), policy);
        }
        Ok(policies)
    }

    /// Each `client.dependencies` key must name a role that can be called.
    pub(crate) fn check_client_dependencies(
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
        let s = c.client_policies("f").unwrap();
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
        let s = c.client_policies("f").unwrap();
        assert_eq!(s.policy("inventory").timeout, Duration::from_millis(500));
        assert_eq!(
            PlatformConfig::default()
                .client_policies("f")
                .unwrap()
                .defaults
                .timeout,
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
            // Single values fail the parse, relations between them the check.
            let e = PlatformConfig::parse(yaml, "f")
                .and_then(|c| c.validate("f"))
                .unwrap_err();
            assert_eq!(e.key, key, "{yaml}");
        }
    }

    #[test]
    fn the_built_in_policy_is_valid_and_its_pauses_are_backoffs() {
        let policy = CallPolicy::default();
        assert_eq!(policy.backoff.base(), Duration::from_millis(25));
        assert_eq!(policy.backoff.max(), Duration::from_millis(500));
        assert_eq!(policy.eject.base(), Duration::from_secs(1));
        assert_eq!(policy.eject.max(), Duration::from_secs(30));
        let e = PlatformConfig::parse(
            "client:\n  dependencies:\n    orders: { backoff_max: 10ms }\n",
            "f",
        )
        .unwrap()
        .validate("f")
        .unwrap_err();
        assert_eq!(e.reason, "expected at least backoff_base (25ms)");
        let e =
            PlatformConfig::parse("client:\n  defaults:\n    eject_base: 0s\n", "f").unwrap_err();
        assert_eq!(
            (e.key.as_str(), e.reason.contains("expected more than 0")),
            ("client.defaults.eject_base", true),
            "{e}"
        );
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
