//! The roles this binary can run: the only list of them in the code.
//!
//! Each role is one module exposing an `ENTRY` (its embedded manifest and start
//! function, which picks the role's own section out of the [`Config`]). Everything that needs "all roles" (the CLI, `svc dev`, the registry's
//! validation) asks [`catalog`] or [`find`], which read this list.

pub mod gateway;
pub mod inventory;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod registry;

#[cfg(test)]
mod routes_tests;

use std::sync::{Arc, OnceLock};

use svc_platform::manifest::{Manifest, RoleCatalog};
use svc_platform::role::{RoleContext, RoleStart, Routes};

use crate::config::Config;

/// One role this binary can run.
pub struct RoleEntry {
    /// The role's manifest, embedded from `roles/<role>.yaml`.
    pub manifest_source: &'static str,
    /// Starts the role with the platform's context and, from `Config`, its own section.
    pub start: fn(&RoleContext, &Config) -> anyhow::Result<Routes>,
}

impl RoleEntry {
    /// The start the platform calls, with the role's settings taken from `config`.
    pub fn start_with<'a>(&'a self, config: &'a Config) -> RoleStart<'a> {
        Box::new(move |ctx| (self.start)(ctx, config))
    }
}

/// Every role, the registry first (it must start before the others).
pub const ALL: &[&RoleEntry] = &[
    &registry::ENTRY,
    &gateway::ENTRY,
    &orders::ENTRY,
    &inventory::ENTRY,
    &payments::ENTRY,
    &notifications::ENTRY,
];

/// The parsed manifests of [`ALL`]. The manifests are embedded at build time and
/// checked by a unit test, so parsing them cannot fail in a released binary.
pub fn catalog() -> Arc<RoleCatalog> {
    static CATALOG: OnceLock<Arc<RoleCatalog>> = OnceLock::new();
    CATALOG
        .get_or_init(|| {
            let manifests = ALL
                .iter()
                .map(|e| Manifest::parse(e.manifest_source, "embedded role manifest"))
                .collect::<Result<Vec<_>, _>>()
                .expect("embedded manifests are valid (see tests)");
            Arc::new(RoleCatalog::new(manifests).expect("embedded manifests are consistent"))
        })
        .clone()
}

#[derive(Debug, thiserror::Error)]
#[error("unknown role `{name}`; valid roles: {valid}")]
pub struct UnknownRole {
    pub name: String,
    pub valid: String,
}

/// The entry and manifest of the role called `name`.
pub fn find(name: &str) -> Result<(&'static RoleEntry, Manifest), UnknownRole> {
    let catalog = catalog();
    for (entry, manifest) in ALL.iter().zip(catalog.iter()) {
        if manifest.name == name {
            return Ok((entry, manifest.clone()));
        }
    }
    Err(UnknownRole {
        name: name.to_string(),
        valid: catalog.names().join(", "),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_parse_and_are_consistent() {
        let catalog = catalog();
        assert_eq!(catalog.names().len(), ALL.len());
        assert_eq!(catalog.names()[0], "registry");
        let mut names = catalog.names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "role names are unique");
    }

    #[test]
    fn unknown_role_lists_valid_ones() {
        let err = find("billing").err().unwrap();
        assert!(err.to_string().contains("orders"));
    }
}
