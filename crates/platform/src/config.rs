//! The platform's configuration: what every instance needs whatever its role (where it
//! listens, its registries, shards, logs, calls to other roles, TLS), and the machinery
//! that loads a config file: a YAML file, then `SVC_*` environment, then flags.
//!
//! The file is parsed strictly (unknown keys are errors) and every value is checked
//! before anything starts, so a bad config stops start-up with the file, the key and
//! what was expected, never later with a confusing failure. Environment and flags are
//! handled by clap (each flag names its `SVC_*` variable) and applied on top through
//! [`Overrides`]. The roles' sections share the file but not this module: the
//! application parses them beside [`PlatformConfig`] through [`AppSections`].

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::manifest::{Manifest, RoleCatalog};
use super::shards::{ShardCounts, MAX_SHARDS};

mod client;
mod document;
mod roles;
mod tls;
mod values;
pub(crate) use client::{CallPolicy, ClientPolicies, ClientSettings};
pub use document::{parse_yaml, read_file, AppSections};
pub use roles::{ExtraCallers, RolesSettings};
pub use tls::TlsSettings;
pub(crate) use tls::{check_scheme, TlsFiles};
pub use values::PositiveDuration;

/// Where a value came from, for error messages: a file path, or "flags/environment".
pub const OVERRIDES_ORIGIN: &str = "command line / SVC_* environment";

/// A configuration problem that stops start-up: which file, which key, what is wrong.
#[derive(Debug, thiserror::Error)]
#[error("{file}: key `{key}`: {reason}")]
pub struct ConfigError {
    pub file: String,
    pub key: String,
    pub reason: String,
}

impl ConfigError {
    pub fn new(file: &str, key: &str, reason: impl Into<String>) -> Self {
        Self {
            file: file.to_string(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// Human-readable lines, for a terminal.
    #[default]
    Pretty,
    /// One JSON object per line, for log shippers and `svc trace`.
    Json,
}

impl LogFormat {
    pub const NAMES: [&'static str; 2] = ["pretty", "json"];

    /// The name used in config files and flags.
    pub fn name(self) -> &'static str {
        match self {
            LogFormat::Pretty => "pretty",
            LogFormat::Json => "json",
        }
    }
}

impl std::str::FromStr for LogFormat {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "pretty" => Ok(LogFormat::Pretty),
            "json" => Ok(LogFormat::Json),
            _ => Err(format!("expected one of: {}", LogFormat::NAMES.join(", "))),
        }
    }
}

/// What every instance is configured with, whatever its role: the config file's
/// top-level keys but the roles' sections. Every field has a documented default, so an
/// empty file (or none) is a valid configuration for local use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PlatformConfig {
    /// Address to bind. Unset: `bind_host` and the role's manifest port (0 = any free port).
    pub(crate) listen: Option<SocketAddr>,
    /// Where the internal mutual-TLS listener of a role with a public API (the gateway)
    /// binds; there `listen` is the public one. Unset: `bind_host`, any free port.
    pub(crate) internal_listen: Option<SocketAddr>,
    /// Interface to bind when `listen` is unset.
    pub(crate) bind_host: IpAddr,
    /// Host name or IP other instances use to reach this one; the port is the bound one.
    /// Unset: the bound IP, or the host name when bound to every interface.
    pub(crate) advertise_host: Option<String>,
    /// Directory holding this instance's redb file.
    pub(crate) data_dir: PathBuf,
    /// Registry base URLs. An instance registers with and renews at every one of them.
    pub(crate) registries: Vec<String>,
    /// Stable name of this instance; names its redb file. Unset: the host name.
    pub instance_id: Option<String>,
    /// Which shard of its role this instance owns; ids it creates carry it (`ord-0-…`).
    pub shard: u32,
    /// Shards per stateful role, the same on every instance of the cluster (default 1
    /// each): where an entity keyed by a SKU, an order id or an idempotency key lives.
    pub shards: ShardCounts,
    pub log_format: LogFormat,
    /// Also append every log line, as JSON, to this file (what `svc trace` reads). Its
    /// directory is created. Unset: stderr only.
    pub log_file: Option<PathBuf>,
    /// actix-web worker threads.
    pub workers: usize,
    pub(crate) discovery: DiscoverySettings,
    pub(crate) http: HttpSettings,
    pub(crate) shutdown: ShutdownSettings,
    /// Calls to other roles: timeouts, retries, ejection, concurrency, per dependency.
    client: ClientSettings,
    /// Export of spans to an OpenTelemetry collector (OTLP/HTTP); off by default.
    pub otlp: OtlpSettings,
    /// Mutual TLS of every internal connection: the CA and this instance's certificate.
    pub tls: TlsSettings,
    /// Roles from files (`roles.dir`) and the built-in endpoints they may call.
    pub roles: RolesSettings,
}

impl Default for PlatformConfig {
    fn default() -> Self {
        Self {
            listen: None,
            internal_listen: None,
            bind_host: IpAddr::from([127, 0, 0, 1]),
            advertise_host: None,
            data_dir: PathBuf::from("data"),
            registries: vec!["https://127.0.0.1:7700".to_string()],
            instance_id: None,
            shard: 0,
            shards: ShardCounts::default(),
            log_format: LogFormat::Pretty,
            log_file: None,
            workers: 2,
            discovery: DiscoverySettings::default(),
            http: HttpSettings::default(),
            shutdown: ShutdownSettings::default(),
            client: ClientSettings::default(),
            otlp: OtlpSettings::default(),
            tls: TlsSettings::default(),
            roles: RolesSettings::default(),
        }
    }
}

/// How an instance keeps its view of its peers fresh.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct DiscoverySettings {
    /// `wait` of each blocking query on the registry's catalog.
    #[serde(with = "humantime_serde")]
    pub(crate) watch_wait: Duration,
    /// Timeout of a single registry call (register, renew, deregister).
    pub(crate) registry_timeout: PositiveDuration,
}

impl Default for DiscoverySettings {
    fn default() -> Self {
        Self {
            watch_wait: Duration::from_secs(30),
            registry_timeout: PositiveDuration::from_secs(2),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct HttpSettings {
    /// Largest request body accepted, in bytes; larger bodies get 413.
    pub(crate) max_body_bytes: usize,
    /// Deprecated: the former name of `client.defaults.timeout`, still honoured (it
    /// wins over that key when set) so older config files keep working.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub(crate) call_timeout: Option<PositiveDuration>,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 * 1024,
            call_timeout: None,
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub(crate) struct ShutdownSettings {
    /// How long in-flight requests may take to finish after SIGTERM.
    #[serde(with = "humantime_serde")]
    pub(crate) drain_timeout: Duration,
}

impl Default for ShutdownSettings {
    fn default() -> Self {
        Self {
            drain_timeout: Duration::from_secs(10),
        }
    }
}

/// Export of the request and saga-step spans to an OpenTelemetry collector, over
/// OTLP/HTTP (protobuf), with the trace and span ids the logs carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpSettings {
    pub enabled: bool,
    /// Collector base URL; spans are POSTed to `<endpoint>/v1/traces`.
    pub endpoint: String,
    /// Limit of one export request; spans of a failed export are dropped.
    pub export_timeout: PositiveDuration,
}

impl Default for OtlpSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: "http://127.0.0.1:4318".to_string(),
            export_timeout: PositiveDuration::from_secs(3),
        }
    }
}

impl OtlpSettings {
    /// Where spans are sent: the endpoint with `/v1/traces` appended.
    pub(crate) fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint.trim_end_matches('/'))
    }

    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        check_collector_url(&self.endpoint)
            .map_err(|reason| ConfigError::new(origin, "otlp.endpoint", reason))
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
    pub log_file: Option<PathBuf>,
    pub shard: Option<u32>,
    /// Counts for the roles named; the file's counts stay for the others.
    pub shards: Option<ShardCounts>,
    pub tls_dir: Option<PathBuf>,
    pub roles_dir: Option<PathBuf>,
}

impl PlatformConfig {
    /// The keys of a config file that are the platform's, in the order of the fields.
    pub const KEYS: &'static [&'static str] = &[
        "listen",
        "internal_listen",
        "bind_host",
        "advertise_host",
        "data_dir",
        "registries",
        "instance_id",
        "shard",
        "shards",
        "log_format",
        "log_file",
        "workers",
        "discovery",
        "http",
        "shutdown",
        "client",
        "otlp",
        "tls",
        "roles",
    ];

    /// Parses YAML text holding only the platform's keys; `origin` names the source in
    /// errors. (A whole config file is parsed by the application, through
    /// [`AppSections`].)
    #[cfg(test)]
    fn parse(text: &str, origin: &str) -> Result<PlatformConfig, ConfigError> {
        parse_yaml(text, origin)
    }

    /// Applies flags and environment on top of the file, then checks the result again.
    pub fn apply(mut self, overrides: Overrides) -> Result<PlatformConfig, ConfigError> {
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
        if let Some(file) = overrides.log_file {
            self.log_file = Some(file);
        }
        if let Some(shard) = overrides.shard {
            self.shard = shard;
        }
        if let Some(shards) = overrides.shards {
            self.shards.merge(&shards);
        }
        if let Some(dir) = overrides.tls_dir {
            self.tls.dir = dir;
        }
        if let Some(dir) = overrides.roles_dir {
            self.roles.dir = Some(dir);
        }
        self.validate(OVERRIDES_ORIGIN)?;
        Ok(self)
    }

    /// Checks values that the types alone do not: relations between durations, URLs, ids.
    pub fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        for (i, url) in self.registries.iter().enumerate() {
            check_base_url(url)
                .and_then(|()| check_scheme(&self.tls, url))
                .map_err(|reason| ConfigError::new(origin, &format!("registries[{i}]"), reason))?;
        }
        self.tls.validate(origin)?;
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
        if self.shard >= MAX_SHARDS {
            return Err(ConfigError::new(
                origin,
                "shard",
                format!("expected 0 to {}", MAX_SHARDS - 1),
            ));
        }
        for (role, count) in self.shards.iter() {
            if count == 0 || count > MAX_SHARDS {
                return Err(ConfigError::new(
                    origin,
                    &format!("shards.{role}"),
                    format!("expected 1 to {MAX_SHARDS}"),
                ));
            }
        }
        if self.workers == 0 || self.workers > 256 {
            return Err(ConfigError::new(origin, "workers", "expected 1 to 256"));
        }
        if self.http.max_body_bytes == 0 {
            return Err(ConfigError::new(
                origin,
                "http.max_body_bytes",
                "expected more than 0",
            ));
        }
        self.client_policies(origin)?;
        self.otlp.check(origin)?;
        Ok(())
    }
}

impl PlatformConfig {
    /// Checks what only the role catalog can tell, for an instance of `role`: the
    /// checks of [`PlatformConfig::check_catalog`], and that a stateful role's `shard` is one of
    /// its `shards` (else its ids would route to a shard nobody runs).
    pub fn check_for_role(
        &self,
        origin: &str,
        role: &Manifest,
        catalog: &RoleCatalog,
    ) -> Result<(), ConfigError> {
        self.check_catalog(origin, catalog)?;
        let count = self.shards.count(&role.name);
        if role.is_sharded() && self.shard >= count {
            return Err(ConfigError::new(
                origin,
                "shard",
                format!(
                    "shard {} of {}: expected 0 to {} (shards.{} is {count})",
                    self.shard,
                    role.name,
                    count - 1,
                    role.name
                ),
            ));
        }
        Ok(())
    }

    /// Checks the role names the config uses against the catalog, whatever role runs:
    /// `client.dependencies` names callable roles, `shards` names stateful ones.
    pub fn check_catalog(&self, origin: &str, catalog: &RoleCatalog) -> Result<(), ConfigError> {
        self.check_client_dependencies(origin, catalog)?;
        for (name, _) in self.shards.iter() {
            let sharded = catalog.get(name).is_some_and(|m| m.is_sharded());
            if !sharded {
                let valid: Vec<&str> = catalog
                    .iter()
                    .filter(|m| m.is_sharded())
                    .map(|m| m.name.as_str())
                    .collect();
                return Err(ConfigError::new(
                    origin,
                    &format!("shards.{name}"),
                    format!("not a sharded role; sharded roles: {}", valid.join(", ")),
                ));
            }
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

/// A collector base URL: http(s), a host, maybe a path prefix; no query or fragment.
fn check_collector_url(url: &str) -> Result<(), String> {
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    if !matches!(parsed.scheme(), "http" | "https") {
        return Err(format!("`{url}`: expected an http:// or https:// URL"));
    }
    if parsed.host_str().is_none() {
        return Err(format!("`{url}`: expected a host"));
    }
    if parsed.query().is_some() || parsed.fragment().is_some() {
        return Err(format!("`{url}`: expected no query or fragment"));
    }
    if parsed.path().trim_end_matches('/').ends_with("/v1/traces") {
        return Err(format!(
            "`{url}`: expected the collector's base URL (`/v1/traces` is appended)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
