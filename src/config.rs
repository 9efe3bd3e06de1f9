//! The application's configuration: the platform's keys ([`PlatformConfig`]) and the
//! sections of the roles, which live with their roles (`roles/<role>/settings.rs`).
//!
//! One YAML file holds both, with the same keys as ever; it is parsed strictly in one
//! pass (see [`svc_platform::config::AppSections`]), so an unknown key anywhere is an
//! error naming its path, and every section is checked before any role starts,
//! whichever role this instance runs: a bad value stops start-up (and `svc config
//! check`) with the file, the key and the reason.

use std::path::Path;

use serde::de::{MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize};
use svc_platform::config::{
    self as platform, parse_yaml, read_file, AppSections, ConfigError, PlatformConfig,
    PositiveDuration, OVERRIDES_ORIGIN,
};
use svc_platform::manifest::{Manifest, RoleCatalog};

use crate::roles::gateway::settings::{GatewayOverrides, GatewaySettings};
use crate::roles::inventory::settings::InventorySettings;
use crate::roles::orders::settings::OrdersSettings;
use crate::roles::payments::settings::PaymentsSettings;
use crate::roles::registry::settings::RegistrySettings;
use crate::sidecar::settings::{AppOverrides, AppSettings};

/// The whole configuration of one process: what the platform uses, and the section of
/// every role (each read only by its role, all checked everywhere).
#[derive(Debug, Clone, Default, Serialize)]
pub struct Config {
    #[serde(flatten)]
    pub platform: PlatformConfig,
    pub registry: RegistrySettings,
    /// The public API's guard: API keys and scopes, rate limits, size and time limits.
    pub gateway: GatewaySettings,
    pub orders: OrdersSettings,
    pub inventory: InventorySettings,
    pub payments: PaymentsSettings,
    /// The application of a sidecar (`svc run --app`).
    pub app: AppSettings,
}

impl AppSections for Config {
    const KEYS: &'static [&'static str] = &[
        "registry",
        "gateway",
        "orders",
        "inventory",
        "payments",
        "app",
    ];

    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error> {
        match key {
            "registry" => self.registry = map.next_value()?,
            "gateway" => self.gateway = map.next_value()?,
            "orders" => self.orders = map.next_value()?,
            "inventory" => self.inventory = map.next_value()?,
            "payments" => self.payments = map.next_value()?,
            "app" => self.app = map.next_value()?,
            _ => unreachable!("`{key}` is not in Config::KEYS"),
        }
        Ok(())
    }
}

impl<'de> Deserialize<'de> for Config {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Config, D::Error> {
        struct Document;
        impl<'de> Visitor<'de> for Document {
            type Value = Config;

            fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
                f.write_str("a map of config keys")
            }

            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Config, A::Error> {
                let mut config = Config::default();
                config.platform = PlatformConfig::deserialize_beside(map, &mut config)?;
                Ok(config)
            }
        }
        deserializer.deserialize_map(Document)
    }
}

/// Values from flags or `SVC_*` variables; each one set replaces the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub platform: platform::Overrides,
    pub gateway: GatewayOverrides,
    pub app: AppOverrides,
}

impl Config {
    /// Reads and checks a config file. No file means all defaults.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = file else {
            return Ok(Config::default());
        };
        let origin = path.display().to_string();
        let config = Self::parse(&read_file(path)?, &origin)?;
        config.validate(&origin)?;
        Ok(config)
    }

    /// Parses YAML text; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        parse_yaml(text, origin)
    }

    /// Applies flags and environment on top of the file, then checks the result again.
    pub fn apply(mut self, overrides: Overrides) -> Result<Config, ConfigError> {
        self.platform = self.platform.apply(overrides.platform)?;
        self.gateway.apply(overrides.gateway);
        self.app.apply(overrides.app);
        self.check_role_sections(OVERRIDES_ORIGIN)?;
        Ok(self)
    }

    /// Checks values that the types alone do not: relations between durations, URLs, ids.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        self.platform.validate(origin)?;
        self.check_role_sections(origin)
    }

    /// The checks of the roles' sections that their types cannot make.
    fn check_role_sections(&self, origin: &str) -> Result<(), ConfigError> {
        self.registry.check(origin)?;
        self.gateway.check(origin)?;
        self.app.check(origin)
    }

    /// What only the role catalog can tell, for an instance of `role` (see
    /// [`PlatformConfig::check_for_role`]).
    pub fn check_for_role(
        &self,
        origin: &str,
        role: &Manifest,
        catalog: &RoleCatalog,
    ) -> Result<(), ConfigError> {
        self.platform.check_for_role(origin, role, catalog)
    }

    /// What only the role catalog can tell, whatever role runs.
    pub fn check_catalog(&self, origin: &str, catalog: &RoleCatalog) -> Result<(), ConfigError> {
        self.platform.check_catalog(origin, catalog)
    }

    /// How long a client of a public listener may take to send a request head: the
    /// public API is the gateway's, so its section says.
    pub fn public_head_timeout(&self) -> PositiveDuration {
        self.gateway.header_read_timeout
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn role_sections_are_not_platform_keys() {
        for key in Config::KEYS {
            assert!(!PlatformConfig::KEYS.contains(key), "{key}");
        }
        let value = serde_json::to_value(Config::default()).unwrap();
        let fields = value.as_object().unwrap();
        assert_eq!(
            fields.len(),
            PlatformConfig::KEYS.len() + Config::KEYS.len(),
            "every top-level key is the platform's or a role's"
        );
        for key in Config::KEYS {
            assert!(fields.contains_key(*key), "{key}");
        }
    }

    #[test]
    fn unknown_top_level_key_names_the_key_and_lists_every_valid_one() {
        let e = Config::parse("ordres:\n  create_wait: 1s\n", "svc.yaml").unwrap_err();
        assert_eq!(e.file, "svc.yaml");
        assert!(e.reason.contains("unknown field `ordres`"), "{e}");
        assert!(
            e.reason.contains("`orders`") && e.reason.contains("`listen`"),
            "{e}"
        );
        assert_eq!(e.key, "ordres");
        let nested = Config::parse("orders:\n  create_wiat: 1s\n", "svc.yaml").unwrap_err();
        assert!(
            nested.reason.contains("line 2"),
            "keeps the position: {nested}"
        );
    }

    #[test]
    fn errors_in_any_section_name_the_key_path() {
        for (yaml, key, reason) in [
            (
                "orders:\n  create_wiat: 1s\n",
                "orders",
                "unknown field `create_wiat`",
            ),
            (
                "payments:\n  decline_above_minor: -1\n",
                "payments.decline_above_minor",
                "expected u64",
            ),
            (
                "inventory:\n  expiry_sweep: often\n",
                "inventory.expiry_sweep",
                "",
            ),
            ("http:\n  max_body: 3\n", "http", "unknown field `max_body`"),
            ("workers: many\n", "workers", "invalid type"),
            // Durations that must be more than 0, in every section.
            (
                "orders:\n  step_retry_max: 0s\n",
                "orders.step_retry_max",
                "expected more than 0",
            ),
            (
                "inventory:\n  reservation_ttl: 0s\n",
                "inventory.reservation_ttl",
                "expected more than 0",
            ),
            (
                "inventory:\n  expiry_sweep: 0ms\n",
                "inventory.expiry_sweep",
                "expected more than 0",
            ),
            (
                "registry:\n  max_wait: 0s\n",
                "registry.max_wait",
                "expected more than 0",
            ),
            (
                "registry:\n  renew_interval: 0s\n",
                "registry.renew_interval",
                "expected more than 0",
            ),
            (
                "discovery:\n  registry_timeout: 0s\n",
                "discovery.registry_timeout",
                "expected more than 0",
            ),
            (
                "http:\n  call_timeout: 0s\n",
                "http.call_timeout",
                "expected more than 0",
            ),
        ] {
            let e = Config::parse(yaml, "f").unwrap_err();
            assert!(e.key.starts_with(key), "{yaml}: {e}");
            assert_eq!(e.file, "f");
            assert!(e.reason.contains(reason), "{yaml}: {e}");
        }
        let e = Config::parse("orders: {}\nlisten: 127.0.0.1:1\norders: {}\n", "f").unwrap_err();
        assert!(e.reason.contains("duplicate"), "{e}");
    }

    #[test]
    fn platform_and_role_values_land_where_they_belong() {
        let c = Config::parse(
            "workers: 3\norders:\n  create_wait: 100ms\npayments:\n  decline_above_minor: 5\n",
            "f",
        )
        .unwrap();
        c.validate("f").unwrap();
        assert_eq!(c.platform.workers, 3);
        assert_eq!(c.orders.create_wait, Duration::from_millis(100));
        assert_eq!(c.payments.decline_above_minor, 5);
    }

    #[test]
    fn overrides_win_and_are_checked() {
        let c = Config::parse("instance_id: a\n", "f").unwrap();
        let c = c
            .apply(Overrides {
                platform: platform::Overrides {
                    instance_id: Some("b".into()),
                    ..Default::default()
                },
                gateway: GatewayOverrides {
                    api_keys_file: Some("keys.yaml".into()),
                },
                ..Default::default()
            })
            .unwrap();
        assert_eq!(c.platform.instance_id.as_deref(), Some("b"));
        assert_eq!(
            c.gateway.api_keys_file.as_deref(),
            Some(Path::new("keys.yaml"))
        );
        let e = Config::default()
            .apply(Overrides {
                gateway: GatewayOverrides {
                    api_keys_file: Some("".into()),
                },
                ..Default::default()
            })
            .unwrap_err();
        assert_eq!(
            (e.file.as_str(), e.key.as_str()),
            (OVERRIDES_ORIGIN, "gateway.api_keys_file")
        );
    }

    /// The files in `config/` are documentation users copy: they must stay valid.
    #[test]
    fn shipped_config_files_are_valid() {
        for (name, text) in [
            (
                "config/default.yaml",
                include_str!("../config/default.yaml"),
            ),
            ("config/dev.yaml", include_str!("../config/dev.yaml")),
            (
                "config/vm-example.yaml",
                include_str!("../config/vm-example.yaml"),
            ),
        ] {
            let config = Config::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            config.validate(name).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn default_file_matches_built_in_defaults() {
        let file = Config::parse(include_str!("../config/default.yaml"), "default").unwrap();
        let built_in = Config::default();
        assert_eq!(
            serde_json::to_value(&file).unwrap(),
            serde_json::to_value(&built_in).unwrap()
        );
    }
}
