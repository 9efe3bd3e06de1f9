//! Runtime configuration: a YAML file, then `SVC_*` environment, then flags.
//!
//! The file is parsed strictly (unknown keys are errors) and every value is checked
//! before anything starts, so a bad config stops start-up with the file, the key and
//! what was expected, never later with a confusing failure. Environment and flags are
//! handled by clap (each flag names its `SVC_*` variable) and applied on top through
//! [`Overrides`].

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Where a value came from, for error messages: a file path, or "flags/environment".
const OVERRIDES_ORIGIN: &str = "command line / SVC_* environment";

/// A configuration problem that stops start-up: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: key `{key}`: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    fn new(file: &str, key: &str, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers and `svc trace`.
    Json,
}

/// The whole configuration of one process. Every field has a documented default, so an
/// empty file (or none) is a valid configuration for local use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to bind. Unset: `bind_host` and the role's manifest port (0 = any free port).
    pub listen: Option<SocketAddr>,
    /// Interface to bind when `listen` is unset.
    pub bind_host: IpAddr,
    /// Host name or IP other instances use to reach this one; the port is the bound one.
    /// Unset: the bound IP, or the host name when bound to every interface.
    pub advertise_host: Option<String>,
    /// Directory holding this instance's redb file.
    pub data_dir: PathBuf,
    /// Registry base URLs. An instance registers with and renews at every one of them.
    pub registries: Vec<String>,
    /// Stable name of this instance; names its redb file. Unset: the host name.
    pub instance_id: Option<String>,
    /// Which shard of its role this instance owns; ids it creates carry it (`ord-0-…`).
    pub shard: u32,
    pub log_format: LogFormat,
    /// actix-web worker threads.
    pub workers: usize,
    pub registry: RegistrySettings,
    pub discovery: DiscoverySettings,
    pub http: HttpSettings,
    pub shutdown: ShutdownSettings,
    pub orders: OrdersSettings,
    pub inventory: InventorySettings,
    pub payments: PaymentsSettings,
}

impl Default for Config {
    fn default() -> Self {
        Self {
            listen: None,
            bind_host: IpAddr::from([127, 0, 0, 1]),
            advertise_host: None,
            data_dir: PathBuf::from("data"),
            registries: vec!["http://127.0.0.1:7700".to_string()],
            instance_id: None,
            shard: 0,
            log_format: LogFormat::Pretty,
            workers: 2,
            registry: RegistrySettings::default(),
            discovery: DiscoverySettings::default(),
            http: HttpSettings::default(),
            shutdown: ShutdownSettings::default(),
            orders: OrdersSettings::default(),
            inventory: InventorySettings::default(),
            payments: PaymentsSettings::default(),
        }
    }
}

/// Settings the registry role applies to every lease it grants.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RegistrySettings {
    /// An instance that has not renewed for this long is evicted.
    #[serde(with = "humantime_serde")]
    pub lease_ttl: Duration,
    /// How often instances are told to renew. Must be well below `lease_ttl`.
    #[serde(with = "humantime_serde")]
    pub renew_interval: Duration,
    /// Upper bound of a blocking query's `wait`.
    #[serde(with = "humantime_serde")]
    pub max_wait: Duration,
}

impl Default for RegistrySettings {
    fn default() -> Self {
        Self {
            lease_ttl: Duration::from_secs(3),
            renew_interval: Duration::from_secs(1),
            max_wait: Duration::from_secs(60),
        }
    }
}

/// How an instance keeps its view of its peers fresh.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DiscoverySettings {
    /// `wait` of each blocking query on the registry's catalog.
    #[serde(with = "humantime_serde")]
    pub watch_wait: Duration,
    /// Timeout of a single registry call (register, renew, deregister).
    #[serde(with = "humantime_serde")]
    pub registry_timeout: Duration,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        Self {
            watch_wait: Duration::from_secs(30),
            registry_timeout: Duration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub max_body_bytes: usize,
    /// Timeout of an outgoing call to another role.
    #[serde(with = "humantime_serde")]
    pub call_timeout: Duration,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            call_timeout: Duration::from_secs(5),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ShutdownSettings {
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub drain_timeout: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Used by the orders role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersSettings {
    /// How long a create call waits for the saga to end before answering 202.
    #[serde(with = "humantime_serde")]
    pub create_wait: Duration,
    /// Longest pause between retries of a saga step whose peer is unavailable.
    #[serde(with = "humantime_serde")]
    pub step_retry_max: Duration,
}

impl Default for OrdersSettings {
    fn default() -> Self {
        Self {
            create_wait: Duration::from_secs(2),
            step_retry_max: Duration::from_secs(5),
        }
    }
}

/// Used by the inventory role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventorySettings {
    /// A reservation never committed is released after this long.
    #[serde(with = "humantime_serde")]
    pub reservation_ttl: Duration,
    /// How often expired reservations are looked for.
    #[serde(with = "humantime_serde")]
    pub expiry_sweep: Duration,
}

impl Default for InventorySettings {
    fn default() -> Self {
        Self {
            reservation_ttl: Duration::from_secs(300),
            expiry_sweep: Duration::from_secs(1),
        }
    }
}

/// Used by the payments role.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsSettings {
    /// Authorizations above this amount (minor units) are declined: a deterministic way
    /// to exercise the compensation path.
    pub decline_above_minor: u64,
}

impl Default for PaymentsSettings {
    fn default() -> Self {
        Self {
            decline_above_minor: 1_000_000,
        }
    }
}

/// Values from flags or `SVC_*` variables; each one set replaces the file's value.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub listen: Option<SocketAddr>,
    pub data_dir: Option<PathBuf>,
    pub registries: Option<Vec<String>>,
    pub instance_id: Option<String>,
    pub log_format: Option<LogFormat>,
}

impl Config {
    /// Reads and checks a config file. No file means all defaults.
    pub fn load(file: Option<&Path>) -> Result<Config, ConfigError> {
        let Some(path) = file else {
            return Ok(Config::default());
        };
        let origin = path.display().to_string();
        let text = std::fs::read_to_string(path)
            .map_err(|e| ConfigError::new(&origin, "-", format!("cannot read file: {e}")))?;
        let config = Self::parse(&text, &origin)?;
        config.validate(&origin)?;
        Ok(config)
    }

    /// Parses YAML text; `origin` names the source in errors.
    pub fn parse(text: &str, origin: &str) -> Result<Config, ConfigError> {
        if text.trim().is_empty() {
            return Ok(Config::default());
        }
        let deserializer = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|err| {
            let key = err.path().to_string();
            let key = if key == "." { "-".to_string() } else { key };
            ConfigError::new(origin, &key, err.into_inner().to_string())
        })
    }

    /// Applies flags and environment on top of the file, then checks the result again.
    pub fn apply(mut self, overrides: Overrides) -> Result<Config, ConfigError> {
        if let Some(listen) = overrides.listen {
            self.listen = Some(listen);
        }
        if let Some(dir) = overrides.data_dir {
            self.data_dir = dir;
        }
        if let Some(registries) = overrides.registries {
            self.registries = registries;
        }
        if let Some(id) = overrides.instance_id {
            self.instance_id = Some(id);
        }
        if let Some(format) = overrides.log_format {
            self.log_format = format;
        }
        self.validate(OVERRIDES_ORIGIN)?;
        Ok(self)
    }

    /// Checks values that the types alone do not: relations between durations, URLs, ids.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        for (i, url) in self.registries.iter().enumerate() {
            check_base_url(url)
                .map_err(|reason| ConfigError::new(origin, &format!("registries[{i}]"), reason))?;
        }
        if let Some(host) = &self.advertise_host {
            check_base_url(&format!("http://{host}:1"))
                .map_err(|reason| ConfigError::new(origin, "advertise_host", reason))?;
            if host.contains(['/', ':', '?', '#', '@']) {
                return Err(ConfigError::new(
                    origin,
                    "advertise_host",
                    format!("`{host}`: expected a host name or IPv4 address, no scheme or port"),
                ));
            }
        }
        if let Some(id) = &self.instance_id {
            check_instance_id(id).map_err(|r| ConfigError::new(origin, "instance_id", r))?;
        }
        if self.shard > 1023 {
            return Err(ConfigError::new(origin, "shard", "expected 0 to 1023"));
        }
        if self.workers == 0 || self.workers > 256 {
            return Err(ConfigError::new(origin, "workers", "expected 1 to 256"));
        }
        let r = &self.registry;
        if r.lease_ttl < Duration::from_millis(100) {
            return Err(ConfigError::new(
                origin,
                "registry.lease_ttl",
                "expected at least 100ms",
            ));
        }
        if r.renew_interval.is_zero() || r.renew_interval * 2 > r.lease_ttl {
            return Err(ConfigError::new(
                origin,
                "registry.renew_interval",
                format!(
                    "expected more than 0 and at most half of registry.lease_ttl ({})",
                    humantime::format_duration(r.lease_ttl)
                ),
            ));
        }
        if r.max_wait.is_zero() {
            return Err(ConfigError::new(
                origin,
                "registry.max_wait",
                "expected more than 0",
            ));
        }
        if self.discovery.registry_timeout.is_zero() {
            return Err(ConfigError::new(
                origin,
                "discovery.registry_timeout",
                "expected more than 0",
            ));
        }
        if self.http.max_body_bytes == 0 {
            return Err(ConfigError::new(
                origin,
                "http.max_body_bytes",
                "expected more than 0",
            ));
        }
        if self.inventory.reservation_ttl.is_zero() {
            return Err(ConfigError::new(
                origin,
                "inventory.reservation_ttl",
                "expected more than 0",
            ));
        }
        if self.inventory.expiry_sweep.is_zero() {
            return Err(ConfigError::new(
                origin,
                "inventory.expiry_sweep",
                "expected more than 0",
            ));
        }
        if self.orders.step_retry_max.is_zero() {
            return Err(ConfigError::new(
                origin,
                "orders.step_retry_max",
                "expected more than 0",
            ));
        }
        if self.http.call_timeout.is_zero() {
            return Err(ConfigError::new(
                origin,
                "http.call_timeout",
                "expected more than 0",
            ));
        }
        Ok(())
    }
}

/// An instance id names files and URL segments: keep it to a safe alphabet.
pub fn check_instance_id(id: &str) -> Result<(), String> {
    super::ids::check_id("instance id", id)
}

/// A base URL such as `http://10.0.0.5:7700`: scheme, host, port, nothing else.
pub fn check_base_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}`: expected an http:// or https:// URL"));
    }
    if parsed.host_str().is_none() {
        return Err(format!("`{url}`: expected a host"));
    }
    if parsed.path() != "/" || parsed.query().is_some() {
        return Err(format!("`{url}`: expected no path or query"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_is_all_defaults() {
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
    fn unknown_key_names_the_key() {
        let e = Config::parse("http:\n  max_body: 3\n", "svc.yaml").unwrap_err();
        assert!(e.reason.contains("unknown field `max_body`"), "{e}");
        assert!(e.key.starts_with("http"), "{e}");
    }

    #[test]
    fn renew_must_fit_in_ttl() {
        let c = Config::parse("registry:\n  lease_ttl: 1s\n  renew_interval: 1s\n", "f").unwrap();
        let e = c.validate("f").unwrap_err();
        assert_eq!(e.key, "registry.renew_interval");
    }

    #[test]
    fn registry_urls_are_checked() {
        let c = Config::parse("registries: [\"ftp://x\"]\n", "f").unwrap();
        assert_eq!(c.validate("f").unwrap_err().key, "registries[0]");
    }

    #[test]
    fn overrides_win() {
        let c = Config::parse("instance_id: a\n", "f").unwrap();
        let c = c
            .apply(Overrides {
                instance_id: Some("b".into()),
                ..Default::default()
            })
            .unwrap();
        assert_eq!(c.instance_id.as_deref(), Some("b"));
    }
}

#[cfg(test)]
mod shipped_files {
    use super::*;

    /// The files in `config/` are documentation users copy: they must stay valid.
    #[test]
    fn shipped_config_files_are_valid() {
        for (name, text) in [
            (
                "config/default.yaml",
                include_str!("../../config/default.yaml"),
            ),
            ("config/dev.yaml", include_str!("../../config/dev.yaml")),
            (
                "config/vm-example.yaml",
                include_str!("../../config/vm-example.yaml"),
            ),
        ] {
            let config = Config::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            config.validate(name).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn default_file_matches_built_in_defaults() {
        let file = Config::parse(include_str!("../../config/default.yaml"), "default").unwrap();
        let built_in = Config::default();
        assert_eq!(
            serde_json::to_value(&file).unwrap(),
            serde_json::to_value(&built_in).unwrap()
        );
    }
}
