//! Role manifests: what a role is, declared once in `roles/<role>.yaml`.
//!
//! The manifest is the single source of a role's default port, the roles it calls, the
//! events it publishes and consumes, and whether it keeps durable state. The CLI,
//! `svc dev`, discovery and the docs read it; nothing lists that information twice.
//! The [`RoleCatalog`] holds every role of the cluster: the built-in ones, embedded in
//! the binary, and the roles from files ([`crate::role_files`]), each with its
//! [`RoleSource`] and the callers the config added to built-in endpoints.

use std::collections::BTreeMap;
use std::path::PathBuf;

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

/// A role manifest (or the config that extends one) that cannot be used: which file,
/// which key, and why. Start-up stops with it.
#[derive(Debug, thiserror::Error)]
#[error("{file}: key `{key}`: {reason}")]
pub struct ManifestError {
    /// The manifest's file (`roles/orders.yaml` for a built-in role), or the config file.
    pub file: String,
    /// The key's path in that file, e.g. `endpoints.GET /v1/x`; `.` for the whole file.
    pub key: String,
    pub reason: String,
}

impl ManifestError {
    pub(crate) fn new(file: &str, key: &str, reason: impl Into<String>) -> ManifestError {
        ManifestError {
            file: file.to_string(),
            key: key.to_string(),
            reason: reason.into(),
        }
    }
}

impl Manifest {
    pub fn parse(text: &str, origin: &str) -> Result<Manifest, ManifestError> {
        let deserializer = serde_yaml::Deserializer::from_str(text);
        serde_path_to_error::deserialize(deserializer).map_err(|e| {
            let key = e.path().to_string();
            ManifestError::new(origin, &key, e.into_inner().to_string())
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

    /// Each declared endpoint as written (`"GET /v1/x/{id}"`) with its callers, config
    /// extensions included (see [`RoleCatalog::is_extra_caller`]).
    pub fn endpoint_callers(&self) -> impl Iterator<Item = (&str, &[String])> {
        self.endpoints
            .iter()
            .map(|(e, callers)| (e.as_str(), callers.as_slice()))
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

/// Where a role's manifest comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RoleSource {
    /// Embedded in the binary, with the role's implementation.
    BuiltIn,
    /// A file of the configured roles directory (`roles.dir`): a role svc does not
    /// contain, run beside its application.
    File(PathBuf),
}

/// Every role of the cluster, in a fixed order (the registry first): the built-in ones,
/// then those from files (see [`crate::role_files`]).
#[derive(Debug, Clone)]
pub struct RoleCatalog {
    manifests: Vec<Manifest>,
    /// Where each of `manifests` comes from, by position.
    sources: Vec<RoleSource>,
    /// Callers the config added to built-in endpoints: role → endpoint → callers. Also
    /// merged into the manifests' `endpoints`, which is what the access policy reads.
    pub(crate) extra_callers: BTreeMap<String, BTreeMap<String, Vec<String>>>,
}

impl RoleCatalog {
    /// The catalog of the built-in roles; checks that manifests only reference roles
    /// that exist.
    pub fn new(manifests: Vec<Manifest>) -> Result<RoleCatalog, ManifestError> {
        let sources = vec![RoleSource::BuiltIn; manifests.len()];
        let catalog = RoleCatalog {
            manifests,
            sources,
            extra_callers: BTreeMap::new(),
        };
        catalog.check()?;
        Ok(catalog)
    }

    /// The file a role's manifest is read from, for errors.
    pub fn origin(&self, name: &str) -> String {
        match self.source(name) {
            Some(RoleSource::File(path)) => path.display().to_string(),
            _ => format!("roles/{name}.yaml"),
        }
    }

    /// Every manifest only references roles that exist, and its endpoints compile.
    pub(crate) fn check(&self) -> Result<(), ManifestError> {
        let known = |name: &str| self.manifests.iter().any(|m| m.name == name);
        for m in &self.manifests {
            let origin = self.origin(&m.name);
            for called in &m.calls {
                if !known(called) {
                    return Err(ManifestError::new(
                        &origin,
                        "calls",
                        format!(
                            "unknown role `{called}`; known roles: {}",
                            self.names().join(", ")
                        ),
                    ));
                }
            }
            for (endpoint, callers) in &m.endpoints {
                let bad = |reason: String| {
                    ManifestError::new(&origin, &format!("endpoints.{endpoint}"), reason)
                };
                let Some((_, path)) = parse_endpoint(endpoint) else {
                    return Err(bad("expected `METHOD /path`".to_string()));
                };
                // The access policy matches it as a compiled template.
                if let Err(e) = crate::path_template::PathTemplate::parse(path) {
                    return Err(bad(e.to_string()));
                }
                for caller in callers {
                    if caller != OPERATOR && !known(caller) {
                        return Err(bad(format!(
                            "unknown caller `{caller}`; known roles: {}, {OPERATOR}",
                            self.names().join(", ")
                        )));
                    }
                }
            }
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Manifest> {
        self.manifests.iter().find(|m| m.name == name)
    }

    /// Where the role called `name` comes from (`None`: no such role).
    pub fn source(&self, name: &str) -> Option<&RoleSource> {
        let at = self.manifests.iter().position(|m| m.name == name)?;
        self.sources.get(at)
    }

    /// Whether `caller` may call `endpoint` of `role` because the config says so (the
    /// role's manifest does not): what `svc roles` marks.
    pub fn is_extra_caller(&self, role: &str, endpoint: &str, caller: &str) -> bool {
        self.extra_callers
            .get(role)
            .and_then(|endpoints| endpoints.get(endpoint))
            .is_some_and(|callers| callers.iter().any(|c| c == caller))
    }

    pub fn iter(&self) -> impl Iterator<Item = &Manifest> {
        self.manifests.iter()
    }

    /// Every manifest with where it comes from.
    pub fn with_sources(&self) -> impl Iterator<Item = (&Manifest, &RoleSource)> {
        self.manifests.iter().zip(&self.sources)
    }

    pub fn names(&self) -> Vec<&str> {
        self.manifests.iter().map(|m| m.name.as_str()).collect()
    }

    /// Adds the manifest of a role from `path`; [`RoleCatalog::check`] follows.
    pub(crate) fn push_file(&mut self, manifest: Manifest, path: PathBuf) {
        self.manifests.push(manifest);
        self.sources.push(RoleSource::File(path));
    }

    /// The manifest of `role`, to change (config extensions).
    pub(crate) fn get_mut(&mut self, role: &str) -> Option<&mut Manifest> {
        self.manifests.iter_mut().find(|m| m.name == role)
    }

    /// Roles that consume `event`: the subscribers an outbox relay delivers to.
    pub(crate) fn consumers_of(&self, event: &str) -> Vec<&Manifest> {
        self.manifests
            .iter()
            .filter(|m| m.consumes.iter().any(|e| e == event))
            .collect()
    }
}
