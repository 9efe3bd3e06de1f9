//! The `gateway:` section: who may call the public API, how often, and how much of a
//! slow or oversized request the gateway puts up with.
//!
//! An API key is configured by its name, the SHA-256 of the key (never the key itself,
//! so a leaked config file grants nothing), the scopes it grants and optionally its own
//! rate. Keys come from `gateway.api_keys` and from the YAML list in
//! `gateway.api_keys_file` (read by the gateway when it starts and again when the file
//! changes, so the file need not exist on machines that run other roles). Every value
//! is checked before the gateway serves: a malformed hash, an unknown scope, a duplicate
//! name or hash stops start-up with the file and the key that is wrong.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use svc_platform::config::{parse_yaml, ConfigError, PositiveDuration};
use svc_platform::ids;

/// What an API key may do; each public route needs one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Scope {
    #[serde(rename = "products:read")]
    ProductsRead,
    #[serde(rename = "products:write")]
    ProductsWrite,
    #[serde(rename = "orders:read")]
    OrdersRead,
    #[serde(rename = "orders:write")]
    OrdersWrite,
}

impl Scope {
    pub const ALL: [Scope; 4] = [
        Scope::ProductsRead,
        Scope::ProductsWrite,
        Scope::OrdersRead,
        Scope::OrdersWrite,
    ];

    /// The name used in config files, the CLI and problem details.
    pub fn as_str(self) -> &'static str {
        match self {
            Scope::ProductsRead => "products:read",
            Scope::ProductsWrite => "products:write",
            Scope::OrdersRead => "orders:read",
            Scope::OrdersWrite => "orders:write",
        }
    }

    /// Parses a scope name; the error lists the valid ones.
    pub fn parse(name: &str) -> Result<Scope, String> {
        Scope::ALL
            .into_iter()
            .find(|s| s.as_str() == name)
            .ok_or_else(|| {
                let valid: Vec<&str> = Scope::ALL.iter().map(|s| s.as_str()).collect();
                format!("unknown scope `{name}`; scopes: {}", valid.join(", "))
            })
    }
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct GatewaySettings {
    /// The API keys, by name, hash and scopes.
    pub api_keys: Vec<ApiKeySettings>,
    /// A YAML file holding more keys (a list shaped like `api_keys`), read by the gateway at start and on change.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub api_keys_file: Option<PathBuf>,
    /// Requests per second and burst of each key that sets no rate of its own.
    pub rate_limit: RateLimitSettings,
    /// Largest sum of header name and value lengths; beyond it: 431.
    pub max_header_bytes: usize,
    /// Limit of a whole request, body included; a client still sending gets 408.
    pub request_timeout: PositiveDuration,
    /// How long a client may take to send the request line and headers.
    pub header_read_timeout: PositiveDuration,
}

impl Default for GatewaySettings {
    fn default() -> Self {
        Self {
            api_keys: Vec::new(),
            api_keys_file: None,
            rate_limit: RateLimitSettings::default(),
            max_header_bytes: 16 * 1024,
            request_timeout: PositiveDuration::from_secs(10),
            header_read_timeout: PositiveDuration::from_secs(5),
        }
    }
}

/// A token bucket: `burst` requests at once, refilled at `per_second`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub per_second: f64,
    pub burst: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            per_second: 20.0,
            burst: 40,
        }
    }
}

/// One API key: what `svc keys new` prints.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApiKeySettings {
    /// Who holds the key; the only thing about a key that is ever logged.
    pub name: String,
    /// SHA-256 of the key, 64 hex digits.
    pub sha256: String,
    pub scopes: Vec<Scope>,
    /// This key's own rate (default: `gateway.rate_limit.per_second`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_per_second: Option<f64>,
    /// This key's own burst (default: `gateway.rate_limit.burst`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst: Option<u32>,
}

impl ApiKeySettings {
    /// Checks one entry; `prefix` is its key, e.g. `gateway.api_keys[2]`.
    pub fn check(&self, origin: &str, prefix: &str) -> Result<(), ConfigError> {
        let err = |key: &str, reason: String| {
            ConfigError::new(origin, &format!("{prefix}.{key}"), reason)
        };
        ids::check_id("key name", &self.name).map_err(|r| err("name", r))?;
        let hex = self.sha256.len() == 64 && self.sha256.bytes().all(|b| b.is_ascii_hexdigit());
        if !hex {
            return Err(err(
                "sha256",
                "expected 64 hex digits (the SHA-256 of the key; `svc keys new` prints it)".into(),
            ));
        }
        if self.scopes.is_empty() {
            return Err(err("scopes", "expected at least one scope".into()));
        }
        if let Some(rate) = self.rate_per_second {
            check_rate(rate).map_err(|r| err("rate_per_second", r))?;
        }
        if let Some(burst) = self.burst {
            check_burst(burst).map_err(|r| err("burst", r))?;
        }
        Ok(())
    }

    /// The hash in the one spelling the gateway compares: lower-case hex.
    pub fn sha256_lower(&self) -> String {
        self.sha256.to_ascii_lowercase()
    }
}

fn check_rate(rate: f64) -> Result<(), String> {
    if rate.is_finite() && rate > 0.0 && rate <= 1_000_000.0 {
        Ok(())
    } else {
        Err("expected more than 0 and at most 1000000".into())
    }
}

fn check_burst(burst: u32) -> Result<(), String> {
    if (1..=1_000_000).contains(&burst) {
        Ok(())
    } else {
        Err("expected 1 to 1000000".into())
    }
}

impl GatewaySettings {
    /// Checks what the file itself holds (not `api_keys_file`, which the gateway reads).
    pub fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let err =
            |key: &str, reason: &str| ConfigError::new(origin, &format!("gateway.{key}"), reason);
        let entries: Vec<(&str, String, &ApiKeySettings)> = self
            .api_keys
            .iter()
            .enumerate()
            .map(|(i, k)| (origin, format!("gateway.api_keys[{i}]"), k))
            .collect();
        check_entries(&entries)?;
        if self
            .api_keys_file
            .as_ref()
            .is_some_and(|p| p.as_os_str().is_empty())
        {
            return Err(err("api_keys_file", "expected a path"));
        }
        check_rate(self.rate_limit.per_second).map_err(|r| err("rate_limit.per_second", &r))?;
        check_burst(self.rate_limit.burst).map_err(|r| err("rate_limit.burst", &r))?;
        if !(1024..=1024 * 1024).contains(&self.max_header_bytes) {
            return Err(err("max_header_bytes", "expected 1024 to 1048576"));
        }
        Ok(())
    }

    /// Every key: `api_keys`, then those of `api_keys_file` (read now), checked
    /// together. `origin` names the config file in errors about `api_keys`.
    pub fn all_keys(&self, origin: &str) -> Result<Vec<ApiKeySettings>, ConfigError> {
        let from_file = match &self.api_keys_file {
            Some(path) => read_keys_file(path)?,
            None => Vec::new(),
        };
        let file_origin = self
            .api_keys_file
            .as_deref()
            .map(|p| p.display().to_string())
            .unwrap_or_default();
        let mut entries: Vec<(&str, String, &ApiKeySettings)> = Vec::new();
        for (i, k) in self.api_keys.iter().enumerate() {
            entries.push((origin, format!("gateway.api_keys[{i}]"), k));
        }
        for (i, k) in from_file.iter().enumerate() {
            entries.push((&file_origin, format!("[{i}]"), k));
        }
        check_entries(&entries)?;
        Ok(self.api_keys.iter().cloned().chain(from_file).collect())
    }
}

/// The gateway's values from flags or `SVC_*` variables; each one set replaces the
/// file's value.
#[derive(Debug, Clone, Default)]
pub struct GatewayOverrides {
    pub api_keys_file: Option<PathBuf>,
}

impl GatewaySettings {
    /// Applies flags and environment on top of the file (check again afterwards).
    pub fn apply(&mut self, overrides: GatewayOverrides) {
        if let Some(file) = overrides.api_keys_file {
            self.api_keys_file = Some(file);
        }
    }
}

/// Reads a keys file: a YAML list of entries. Errors name the file and the index.
pub fn read_keys_file(path: &Path) -> Result<Vec<ApiKeySettings>, ConfigError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(&origin, "-", format!("cannot read the API keys file: {e}"))
    })?;
    parse_yaml(&text, &origin)
}

/// Checks each entry, then that no name and no hash is used twice. Each entry comes
/// with its origin (file) and key, so an error points at the entry to fix.
fn check_entries(entries: &[(&str, String, &ApiKeySettings)]) -> Result<(), ConfigError> {
    let mut names: HashMap<&str, &str> = HashMap::new();
    let mut hashes: HashMap<String, &str> = HashMap::new();
    for (origin, key, entry) in entries {
        entry.check(origin, key)?;
        if let Some(first) = names.insert(&entry.name, key) {
            return Err(ConfigError::new(
                origin,
                &format!("{key}.name"),
                format!("duplicate key name `{}` (also at {first})", entry.name),
            ));
        }
        if let Some(first) = hashes.insert(entry.sha256_lower(), key) {
            return Err(ConfigError::new(
                origin,
                &format!("{key}.sha256"),
                format!("the same key as {first}: give every client its own key"),
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
