//! The roles this binary can run: the only list of them in the code.
//!
//! Each role is one module exposing an `ENTRY` (its embedded manifest and start
//! function, which picks the role's own section out of the [`Config`]). Everything that
//! needs "all roles" (the CLI, `svc dev`, the registry's validation, access policies,
//! the outbox relay) gets the catalog [`catalog`] builds once at start: these roles
//! plus the roles from files the config names (`roles.dir`), which have a manifest
//! but no entry here. [`find`] gives a role's entry.

pub mod gateway;
pub mod inventory;
pub mod notifications;
pub mod orders;
pub mod payments;
pub mod registry;

#[cfg(test)]
mod routes_tests;

use std::sync::{Arc, OnceLock};

use svc_platform::config::RolesSettings;
use svc_platform::manifest::{Manifest, ManifestError, RoleCatalog, RoleSource};
use svc_platform::role::{RoleContext, RoleStart, Routes};
use svc_platform::role_files;

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

/// The parsed manifests of [`ALL`]: the built-in roles alone. The manifests are
/// embedded at build time and checked by a unit test, so parsing them cannot fail in a
/// released binary. What runs asks [`catalog`] instead, which adds the roles from files.
pub fn built_in() -> Arc<RoleCatalog> {
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

/// The catalog of the cluster: the built-in roles, the roles from files of
/// `settings.dir`, and the callers `settings.extra_callers` adds. The one place that
/// builds it: every command builds it once at start from its config and passes it on.
/// `config_origin` names the config in errors about its `roles` keys.
pub fn catalog(
    settings: &RolesSettings,
    config_origin: &str,
) -> Result<Arc<RoleCatalog>, ManifestError> {
    role_files::load_catalog(&built_in(), settings, config_origin).map(Arc::new)
}

/// Why `svc run --role R` cannot run `R`.
#[derive(Debug, thiserror::Error)]
pub enum RoleLookupError {
    #[error("unknown role `{name}`; valid roles: {valid}")]
    Unknown { name: String, valid: String },
    #[error(
        "role `{name}` (declared by {file}) has no implementation in svc: it needs \
         `--app <URL of its application>` (or app.url), to run beside it as a sidecar"
    )]
    NeedsApp { name: String, file: String },
    #[error("role `{name}` is built in: `--app` (app.url) is only for roles from files")]
    BuiltInWithApp { name: String },
}

/// The built-in entry of the role called `name`, and its manifest from `catalog` (with
/// the callers the config added).
pub fn find(
    catalog: &RoleCatalog,
    name: &str,
) -> Result<(&'static RoleEntry, Manifest), RoleLookupError> {
    let built_in = built_in();
    let entry = ALL
        .iter()
        .zip(built_in.iter())
        .find(|(_, manifest)| manifest.name == name)
        .map(|(entry, _)| *entry);
    match (entry, catalog.get(name), catalog.source(name)) {
        (Some(entry), Some(manifest), _) => Ok((entry, manifest.clone())),
        (None, Some(_), Some(RoleSource::File(path))) => Err(RoleLookupError::NeedsApp {
            name: name.to_string(),
            file: path.display().to_string(),
        }),
        _ => Err(RoleLookupError::Unknown {
            name: name.to_string(),
            valid: catalog.names().join(", "),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifests_parse_and_are_consistent() {
        let catalog = built_in();
        assert_eq!(catalog.names().len(), ALL.len());
        assert_eq!(catalog.names()[0], "registry");
        let mut names = catalog.names();
        names.sort();
        names.dedup();
        assert_eq!(names.len(), ALL.len(), "role names are unique");
    }

    #[test]
    fn a_role_from_a_file_is_in_the_catalog_but_needs_its_app_to_run() {
        let dir = tempfile::tempdir().unwrap();
        let manifest = "name: loyalty\ndescription: d\nport: 0\nstateful: false\n\
            registers: true\ncalls: []\npublishes: []\nconsumes: [order.confirmed]\n";
        std::fs::write(dir.path().join("loyalty.yaml"), manifest).unwrap();
        let settings = RolesSettings {
            dir: Some(dir.path().to_path_buf()),
            ..Default::default()
        };
        let catalog = catalog(&settings, "svc.yaml").unwrap();
        assert!(catalog.get("loyalty").is_some());
        assert!(matches!(
            find(&catalog, "loyalty"),
            Err(RoleLookupError::NeedsApp { .. })
        ));
        assert!(find(&catalog, "orders").is_ok());
    }

    #[test]
    fn unknown_role_lists_valid_ones() {
        let err = find(&built_in(), "billing").err().unwrap();
        assert!(err.to_string().contains("orders"));
    }
}
