//! Role manifests: what a role is, declared once in `roles/<role>.yaml`.
//!
//! The manifest is the single source of a role's default port, the roles it calls, the
//! events it publishes and consumes, and whether it keeps durable state. The CLI,
//! `svc dev`, discovery and the docs read it; nothing lists that information twice.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub description: String,
    /// Default listen port; 0 lets the OS pick (the bound address is what gets registered).
    pub port: u16,
    pub stateful: bool,
    /// Whether instances of this role register with the registry (all but the registry).
    pub registers: bool,
    pub calls: Vec<String>,
    pub publishes: Vec<String>,
    pub consumes: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
#[error("role manifest {origin}: {reason}")]
pub struct ManifestError {
    pub origin: String,
    pub reason: String,
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
    pub fn consumers_of(&self, event: &str) -> Vec<&Manifest> {
        self.manifests
            .iter()
            .filter(|m| m.consumes.iter().any(|e| e == event))
            .collect()
    }
}
