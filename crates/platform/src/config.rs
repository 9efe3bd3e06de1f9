//! Runtime configuration: a YAML file, then `SVC_*` environment, then flags.
//!
//! The file is parsed strictly (unknown keys are errors) and every value is checked
//! before anything starts, so a bad config stops start-up with the file, the key and
//! what was expected, never later with a confusing failure. Environment and flags are
//! handled by clap (each flag names its `SVC_*` variable) and applied on top through
//! [`Overrides`].

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::manifest::{Manifest, RoleCatalog};
use super::shards::{ShardCounts, MAX_SHARDS};

mod gateway;
mod tls;
pub use gateway::*;
pub use tls::{check_scheme, TlsFiles, TlsSettings};

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

/// The whole configuration of one process. Every field has a documented default, so an
/// empty file (or none) is a valid configuration for local use.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Address to bind. Unset: `bind_host` and the role's manifest port (0 = any free port).
    pub listen: Option<SocketAddr>,
    /// Where the internal mutual-TLS listener of a role with a public API (the gateway)
    /// binds; there `listen` is the public one. Unset: `bind_host`, any free port.
    pub internal_listen: Option<SocketAddr>,
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
    /// Shards per stateful role, the same on every instance of the cluster (default 1
    /// each): where an entity keyed by a SKU, an order id or an idempotency key lives.
    pub shards: ShardCounts,
    pub log_format: LogFormat,
    /// Also append every log line, as JSON, to this file (what `svc trace` reads). Its
    /// directory is created. Unset: stderr only.
    pub log_file: Option<PathBuf>,
    /// actix-web worker threads.
    pub workers: usize,
    pub registry: RegistrySettings,
    pub discovery: DiscoverySettings,
    pub http: HttpSettings,
    pub shutdown: ShutdownSettings,
    pub orders: OrdersSettings,
    pub inventory: InventorySettings,
    pub payments: PaymentsSettings,
    /// Calls to other roles: timeouts, retries, ejection, concurrency, per dependency.
    pub client: ClientSettings,
    /// Export of spans to an OpenTelemetry collector (OTLP/HTTP); off by default.
    pub otlp: OtlpSettings,
    /// The public API's guard: API keys and scopes, rate limits, size and time limits.
    pub gateway: GatewaySettings,
    /// Mutual TLS of every internal connection: the CA and this instance's certificate.
    pub tls: TlsSettings,
}

impl Default for Config {
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
            registry: RegistrySettings::default(),
            discovery: DiscoverySettings::default(),
            http: HttpSettings::default(),
            shutdown: ShutdownSettings::default(),
            orders: OrdersSettings::default(),
            inventory: InventorySettings::default(),
            payments: PaymentsSettings::default(),
            client: ClientSettings::default(),
            otlp: OtlpSettings::default(),
            gateway: GatewaySettings::default(),
            tls: TlsSettings::default(),
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
    /// Deprecated: the former name of `client.defaults.timeout`, still honoured (it
    /// wins over that key when set) so older config files keep working.
    #[serde(with = "humantime_serde", skip_serializing_if = "Option::is_none")]
    pub call_timeout: Option<Duration>,
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

/// Export of the request and saga-step spans to an OpenTelemetry collector, over
/// OTLP/HTTP (protobuf), with the trace and span ids the logs carry.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OtlpSettings {
    pub enabled: bool,
    /// Collector base URL; spans are POSTed to `<endpoint>/v1/traces`.
    pub endpoint: String,
    /// Limit of one export request; spans of a failed export are dropped.
    #[serde(with = "humantime_serde")]
    pub export_timeout: Duration,
}

impl Default for OtlpSettings {
    fn default() -> Self {
        Self {
            enabled: false,
            endpoint: "http://127.0.0.1:4318".to_string(),
            export_timeout: Duration::from_secs(3),
        }
    }
}

impl OtlpSettings {
    /// Where spans are sent: the endpoint with `/v1/traces` appended.
    pub fn traces_url(&self) -> String {
        format!("{}/v1/traces", self.endpoint.trim_end_matches('/'))
    }

    fn check(&self, origin: &str) -> Result<(), ConfigError> {
        check_collector_url(&self.endpoint)
            .map_err(|reason| ConfigError::new(origin, "otlp.endpoint", reason))?;
        if self.export_timeout.is_zero() {
            return Err(ConfigError::new(
                origin,
                "otlp.export_timeout",
                "expected more than 0",
            ));
        }
        Ok(())
    }
}

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
    fn check(&self, origin: &str, prefix: &str) -> Result<(), ConfigError> {
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
    pub api_keys_file: Option<PathBuf>,
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
        if let Some(file) = overrides.api_keys_file {
            self.gateway.api_keys_file = Some(file);
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
        if self.http.call_timeout.is_some_and(|t| t.is_zero()) {
            return Err(ConfigError::new(
                origin,
                "http.call_timeout",
                "expected more than 0",
            ));
        }
        self.check_client(origin)?;
        self.otlp.check(origin)?;
        self.gateway.check(origin)?;
        Ok(())
    }
}

impl Config {
    /// Checks what only the role catalog can tell, for an instance of `role`: the
    /// checks of [`Config::check_catalog`], and that a stateful role's `shard` is one of
    /// its `shards` (else its ids would route to a shard nobody runs).
    pub fn check_for_role(
        &self,
        origin: &str,
        role: &Manifest,
        catalog: &RoleCatalog,
    ) -> Result<(), ConfigError> {
        self.check_catalog(origin, catalog)?;
        let count = self.shards.count(&role.name);
        if role.stateful && role.registers && self.shard >= count {
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
            let sharded = catalog.get(name).is_some_and(|m| m.stateful && m.registers);
            if !sharded {
                let valid: Vec<&str> = catalog
                    .iter()
                    .filter(|m| m.stateful && m.registers)
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

impl Config {
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
    fn check_client(&self, origin: &str) -> Result<(), ConfigError> {
        let settings = self.client_settings();
        settings.defaults.check(origin, "client.defaults")?;
        for role in settings.dependencies.keys() {
            let prefix = format!("client.dependencies.{role}");
            super::ids::check_id("role name", role)
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
    fn otlp_is_off_by_default_and_its_endpoint_is_checked() {
        let c = Config::parse("", "f").unwrap();
        assert!(!c.otlp.enabled);
        assert_eq!(c.otlp.traces_url(), "http://127.0.0.1:4318/v1/traces");
        let c = Config::parse(
            "otlp:\n  enabled: true\n  endpoint: https://otel.example/prefix/\n",
            "f",
        )
        .unwrap();
        c.validate("f").unwrap();
        assert_eq!(c.otlp.traces_url(), "https://otel.example/prefix/v1/traces");
        for bad in [
            "otlp:\n  endpoint: 127.0.0.1:4318\n",
            "otlp:\n  endpoint: ftp://collector\n",
            "otlp:\n  endpoint: http://collector:4318/v1/traces\n",
            "otlp:\n  endpoint: http://collector:4318?x=1\n",
        ] {
            let c = Config::parse(bad, "f").unwrap();
            assert_eq!(c.validate("f").unwrap_err().key, "otlp.endpoint", "{bad}");
        }
        let c = Config::parse("otlp:\n  export_timeout: 0s\n", "f").unwrap();
        assert_eq!(c.validate("f").unwrap_err().key, "otlp.export_timeout");
        let e = Config::parse("otlp:\n  enable: true\n", "f").unwrap_err();
        assert!(e.key.starts_with("otlp"), "{e}");
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

    #[test]
    fn shard_counts_are_checked_and_merged_with_flags() {
        let c = Config::parse("shard: 1\nshards:\n  orders: 2\n  inventory: 3\n", "f").unwrap();
        c.validate("f").unwrap();
        assert_eq!(
            (c.shards.count("orders"), c.shards.count("payments")),
            (2, 1)
        );
        let flags = crate::shards::ShardCounts::parse_list(&["orders=4".into()]).ok();
        let c = c
            .apply(Overrides {
                shard: Some(3),
                shards: flags,
                ..Default::default()
            })
            .unwrap();
        assert_eq!((c.shard, c.shards.count("orders")), (3, 4));
        assert_eq!(
            c.shards.count("inventory"),
            3,
            "the file's other counts stay"
        );
        let zero = Config::parse("shards:\n  orders: 0\n", "f").unwrap();
        assert_eq!(zero.validate("f").unwrap_err().key, "shards.orders");
    }

    fn manifest(name: &str, stateful: bool) -> Manifest {
        Manifest {
            name: name.into(),
            description: String::new(),
            port: 0,
            stateful,
            registers: true,
            calls: Vec::new(),
            publishes: Vec::new(),
            consumes: Vec::new(),
            endpoints: Default::default(),
            public: false,
        }
    }

    #[test]
    fn a_shard_must_be_one_of_its_roles_shards() {
        let (orders, gateway) = (manifest("orders", true), manifest("gateway", false));
        let catalog = RoleCatalog::new(vec![orders.clone(), gateway.clone()]).unwrap();
        let c = Config::parse("shard: 2\nshards:\n  orders: 2\n", "f").unwrap();
        let e = c.check_for_role("f", &orders, &catalog).unwrap_err();
        assert_eq!(e.key, "shard");
        assert!(e.reason.contains("expected 0 to 1"), "{e}");
        // A stateless role ignores its shard.
        c.check_for_role("f", &gateway, &catalog).unwrap();
        let c = Config::parse("shards:\n  gateway: 2\n", "f").unwrap();
        let e = c.check_for_role("f", &orders, &catalog).unwrap_err();
        assert_eq!(e.key, "shards.gateway");
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
                include_str!("../../../config/default.yaml"),
            ),
            ("config/dev.yaml", include_str!("../../../config/dev.yaml")),
            (
                "config/vm-example.yaml",
                include_str!("../../../config/vm-example.yaml"),
            ),
        ] {
            let config = Config::parse(text, name).unwrap_or_else(|e| panic!("{e}"));
            config.validate(name).unwrap_or_else(|e| panic!("{e}"));
        }
    }

    #[test]
    fn default_file_matches_built_in_defaults() {
        let file = Config::parse(include_str!("../../../config/default.yaml"), "default").unwrap();
        let built_in = Config::default();
        assert_eq!(
            serde_json::to_value(&file).unwrap(),
            serde_json::to_value(&built_in).unwrap()
        );
    }
}

#[cfg(test)]
mod client_settings {
    use super::*;

    #[test]
    fn dependencies_inherit_the_defaults_and_change_what_they_set() {
        let c = Config::parse(
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
        let c = Config::parse("http:\n  call_timeout: 500ms\n", "f").unwrap();
        c.validate("f").unwrap();
        let s = c.client_settings();
        assert_eq!(s.policy("inventory").timeout, Duration::from_millis(500));
        assert_eq!(
            Config::default().client_settings().defaults.timeout,
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
            let c = Config::parse(yaml, "f").unwrap();
            assert_eq!(c.validate("f").unwrap_err().key, key, "{yaml}");
        }
    }

    #[test]
    fn unknown_keys_and_roles_are_errors() {
        let e = Config::parse(
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
        let c = Config::parse(
            "client:\n  dependencies:\n    ordres: { timeout: 1s }\n",
            "f",
        )
        .unwrap();
        let e = c
            .check_for_role("f", &manifest("gateway"), &catalog)
            .unwrap_err();
        assert_eq!(e.key, "client.dependencies.ordres");
        assert!(e.reason.contains("gateway, orders"), "{e}");
        let c = Config::parse(
            "client:\n  dependencies:\n    orders: { timeout: 1s }\n",
            "f",
        )
        .unwrap();
        c.check_for_role("f", &manifest("gateway"), &catalog)
            .unwrap();
    }
}
