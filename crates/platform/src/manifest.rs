//! Role manifests: what a role is, declared once in `roles/<role>.yaml`.
//!
//! The manifest is the single source of a role's default port, the roles it calls, the
//! events it publishes and consumes, and whether it keeps durable state. The CLI,
//! `svc dev`, discovery and the docs read it; nothing lists that information twice.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub description: String,
    /// Default listen port; 0 lets the OS pick (the bound address is what gets registered).
    pub port: u16,
    /// The role's routes are the public API (the gateway): they are served on their own
    /// listener at `port`, without client certificates, and the instance's internal
    /// mutual-TLS listener (health, metrics) takes any free port.
    #[serde(default)]
    pub public: bool,
    pub stateful: bool,
    /// Whether instances of this role register with the registry (all but the registry).
    pub registers: bool,
    pub calls: Vec<String>,
    pub publishes: Vec<String>,
    pub consumes: Vec<String>,
    /// Internal endpoints (`"METHOD /path/{param}"`) and the caller identities (roles, or
    /// `operator`) each accepts over mutual TLS. An endpoint not listed is not served.
    #[serde(default)]
    pub(crate) endpoints: BTreeMap<String, Vec<String>>,
}

#[derive(Debug, thiserror::Error)]
#[error("role manifest {origin}: {reason}")]
pub struct ManifestError {
    origin: String,
    reason: String,
}

impl Manifest {
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        let deserializer = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            ManifestError {
                origin: origin.to_string(),
                reason: format!("key `{key}`: {}", e.into_inner()),
            }
        })
    }

    /// The role every other instance registers with: the only one that does not register.
    pub fn is_registry(&self) -> bool {
        !self.registers
    }

    /// A role whose instances each own a shard: it keeps state and registers.
    pub fn is_sharded(&self) -> bool {
        self.stateful && self.registers
    }

    /// The declared endpoints as `(method, path template)`, e.g. `("GET", "/v1/x/{id}")`
    /// (the catalog has checked every one parses).
    pub fn endpoints(&self) -> impl Iterator<Item = (&str, &str)> {
        self.endpoints.keys().filter_map(|e| parse_endpoint(e))
    }
}

/// The identity of people and tools (`svc status`, tests) in certificates and manifests.
pub const OPERATOR: &str = "operator";

/// Splits `"GET /v1/x/{id}"` into method and path.
pub(crate) fn parse_endpoint(endpoint: &str) -> Option<(&str, &str)> {
    let (method, path) = endpoint.split_once(' ')?;
    let known = ["GET", "POST", "PUT", "DELETE", "PATCH"].contains(&method);
    (known && path.starts_with('/') && !path.contains(' ')).then_some((method, path))
}

/// Every role this binary can run, in a fixed order (the registry first).
#[derive(Debug, Clone)]
pub struct RoleCatalog {
    manifests: Vec<Manifest>,
}

impl RoleCatalog {
    /// Builds the catalog and checks that manifests only reference roles that exist.
    pub fn new(manifests: Vec<Manifest>) -> Result<RoleCatalog, ManifestError> {
        for m in &manifests {
            for called in &m.calls {
                if !manifests.iter().any(|other| &other.name == called) {
                    return Err(ManifestError {
                        origin: format!("roles/{}.yaml", m.name),
                        reason: format!("key `calls`: unknown role `{called}`"),
                    });
                }
            }
        }
        for m in &manifests {
            for (endpoint, callers) in &m.endpoints {
                let bad = |reason: String| ManifestError {
                    origin: format!("roles/{}.yaml", m.name),
                    reason: format!("key `endpoints.{endpoint}`: {reason}"),
                };
                let Some((_, path)) = parse_endpoint(endpoint) else {
                    return Err(bad("expected `METHOD /path`".to_string()));
                };
                // The access policy matches it as a compiled template.
                if let Err(e) = crate::path_template::PathTemplate::parse(path) {
                    return Err(bad(e.to_string()));
                }
                for caller in callers {
                    if caller != OPERATOR && !manifests.iter().any(|o| &o.name == caller) {
                        return Err(bad(format!("unknown caller `{caller}`")));
                    }
                }
            }
        }
        Ok(RoleCatalog { manifests })
    }

    pub fn get(&self, name: &str) -> Option<&Manifest> {
        self.manifests.iter().find(|m| m.name == name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Manifest> {
        self.manifests.iter()
    }

    pub fn names(&self) -> Vec<&str> {
        self.manifests.iter().map(|m| m.name.as_str()).collect()
    }

    /// Roles that consume `event`: the subscribers an outbox relay delivers to.
    pub(crate) fn consumers_of(&self, event: &str) -> Vec<&Manifest> {
        self.manifests
            .iter()
            .filter(|m| m.consumes.iter().any(|e| e == event))
            .collect()
    }
}
