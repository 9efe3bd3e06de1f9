//! Roles from files: the manifests of roles svc does not contain, read once at start.
//!
//! A service written in another language joins the cluster with a manifest of the same
//! schema as the built-in ones (`roles/<role>.yaml`: endpoints and their callers,
//! calls, publishes, consumes), in the directory the config names (`roles.dir`). The
//! catalog every instance builds is then "built-in + that directory", so the registry
//! admits such a role's instances, access policies know it as a caller, and relays
//! deliver the events it consumes. A built-in endpoint accepts it only where the config
//! says so (`roles.extra_callers`), never by default; the one exception is the
//! registry's endpoints that every registering role may call, since it registers too.
//!
//! Everything is checked before anything starts; each refusal is a [`ManifestError`]
//! naming the file and the key: a file that does not parse, a role that clashes with a
//! built-in one (a file cannot replace or widen a built-in role), a file whose name is
//! not its role's, a caller or callee that no manifest declares, an extension of an
//! endpoint that does not exist or for a caller that is not a role from a file.

use std::path::{Path, PathBuf};

use super::config::{ExtraCallers, RolesSettings};
use super::manifest::{Manifest, ManifestError, RoleCatalog, RoleSource, OPERATOR};

/// The key of the roles directory in a config file.
const DIR_KEY: &str = "roles.dir";
/// The key of the caller extensions in a config file.
const EXTRA_CALLERS_KEY: &str = "roles.extra_callers";

/// `built_in` plus the roles of `settings.dir`, with `settings.extra_callers` applied;
/// `config_origin` names the config in errors about its own keys.
pub fn load_catalog(
    built_in: &RoleCatalog,
    settings: &RolesSettings,
    config_origin: &str,
) -> Result<RoleCatalog, ManifestError> {
    let mut catalog = built_in.clone();
    if let Some(dir) = &settings.dir {
        for path in manifest_files(dir, config_origin)? {
            let manifest = read_manifest(&path)?;
            check_role_of_file(&catalog, &manifest, &path)?;
            catalog.push_file(manifest, path);
        }
    }
    admit_to_registry(&mut catalog);
    catalog.check()?;
    extend_callers(&mut catalog, &settings.extra_callers, config_origin)?;
    Ok(catalog)
}

/// A role from a file registers like every built-in role but the registry: the
/// registry's endpoints that every registering built-in role may call (register, renew,
/// deregister, read the catalog) accept it too. Which role an instance may register as
/// is still its certificate's, checked by the registry's handlers.
fn admit_to_registry(catalog: &mut RoleCatalog) {
    let mut registering = Vec::new();
    let mut from_files = Vec::new();
    let mut registry = None;
    for (m, source) in catalog.with_sources() {
        match source {
            RoleSource::BuiltIn if m.registers => registering.push(m.name.clone()),
            RoleSource::BuiltIn => registry = Some(m.name.clone()),
            RoleSource::File(_) => from_files.push(m.name.clone()),
        }
    }
    let Some(registry) = registry else { return };
    if from_files.is_empty() || registering.is_empty() {
        return;
    }
    let Some(manifest) = catalog.get_mut(&registry) else {
        return;
    };
    let mut added = std::collections::BTreeMap::new();
    for (endpoint, callers) in manifest.endpoints.iter_mut() {
        if registering.iter().all(|r| callers.contains(r)) {
            callers.extend(from_files.iter().cloned());
            added.insert(endpoint.clone(), from_files.clone());
        }
    }
    catalog.extra_callers.insert(registry, added);
}

/// The `*.yaml` files of `dir`, by name; other files are left alone.
fn manifest_files(dir: &Path, config_origin: &str) -> Result<Vec<PathBuf>, ManifestError> {
    let unreadable = |e: std::io::Error| {
        ManifestError::new(
            config_origin,
            DIR_KEY,
            format!("cannot read the roles directory {}: {e}", dir.display()),
        )
    };
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(unreadable)? {
        let path = entry.map_err(unreadable)?.path();
        if path.extension().is_some_and(|e| e == "yaml") && path.is_file() {
            files.push(path);
        }
    }
    files.sort();
    Ok(files)
}

fn read_manifest(path: &Path) -> Result<Manifest, ManifestError> {
    let origin = path.display().to_string();
    let text = std::fs::read_to_string(path)
        .map_err(|e| ManifestError::new(&origin, ".", format!("cannot read: {e}")))?;
    Manifest::parse(&text, &origin)
}

/// What a role from a file must be, beyond parsing: a new role, named like its file,
/// that registers.
fn check_role_of_file(
    catalog: &RoleCatalog,
    manifest: &Manifest,
    path: &Path,
) -> Result<(), ManifestError> {
    let origin = path.display().to_string();
    let name = &manifest.name;
    crate::ids::check_id("role name", name)
        .map_err(|reason| ManifestError::new(&origin, "name", reason))?;
    if name == OPERATOR {
        return Err(ManifestError::new(
            &origin,
            "name",
            format!("`{OPERATOR}` is the identity of people and tools, not a role"),
        ));
    }
    match catalog.source(name) {
        Some(RoleSource::BuiltIn) => {
            return Err(ManifestError::new(
                &origin,
                "name",
                format!(
                    "role `{name}` is built in; a file cannot replace or change a built-in \
                     role (give this one another name; roles.extra_callers lets it call \
                     built-in endpoints)"
                ),
            ))
        }
        Some(RoleSource::File(other)) => {
            return Err(ManifestError::new(
                &origin,
                "name",
                format!("role `{name}` is also declared by {}", other.display()),
            ))
        }
        None => {}
    }
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if stem != name {
        return Err(ManifestError::new(
            &origin,
            "name",
            format!("`{name}` in a file named {stem}.yaml: expected the file to be {name}.yaml"),
        ));
    }
    if !manifest.registers {
        return Err(ManifestError::new(
            &origin,
            "registers",
            "expected true: every role but the built-in registry registers",
        ));
    }
    Ok(())
}

/// Adds the configured callers to built-in endpoints; each must be a role from a file.
fn extend_callers(
    catalog: &mut RoleCatalog,
    extra: &ExtraCallers,
    config_origin: &str,
) -> Result<(), ManifestError> {
    for (role, endpoints) in extra {
        let key = format!("{EXTRA_CALLERS_KEY}.{role}");
        let bad = |key: &str, reason: String| ManifestError::new(config_origin, key, reason);
        match catalog.source(role) {
            Some(RoleSource::BuiltIn) => {}
            Some(RoleSource::File(path)) => {
                return Err(bad(
                    &key,
                    format!(
                        "`{role}` is a role from a file: list its callers in {}",
                        path.display()
                    ),
                ))
            }
            None => {
                return Err(bad(
                    &key,
                    format!(
                        "unknown role `{role}`; known roles: {}",
                        catalog.names().join(", ")
                    ),
                ))
            }
        }
        for (endpoint, callers) in endpoints {
            let key = format!("{key}.{endpoint}");
            for caller in callers {
                if !matches!(catalog.source(caller), Some(RoleSource::File(_))) {
                    let files: Vec<&str> = catalog
                        .with_sources()
                        .filter(|(_, s)| matches!(s, RoleSource::File(_)))
                        .map(|(m, _)| m.name.as_str())
                        .collect();
                    return Err(bad(
                        &key,
                        format!(
                            "`{caller}` is not a role from a file (only those get extra \
                             callers; a built-in role's are its manifest's); roles from \
                             files: {}",
                            if files.is_empty() {
                                "none".to_string()
                            } else {
                                files.join(", ")
                            }
                        ),
                    ));
                }
            }
            let manifest = catalog.get_mut(role).expect("a built-in role, found above");
            let Some(allowed) = manifest.endpoints.get_mut(endpoint) else {
                let declared: Vec<&str> = manifest.endpoints.keys().map(String::as_str).collect();
                return Err(bad(
                    &key,
                    format!(
                        "`{role}` declares no endpoint `{endpoint}`; it declares: {}",
                        declared.join("; ")
                    ),
                ));
            };
            let mut added = Vec::new();
            for caller in callers {
                if !allowed.contains(caller) {
                    allowed.push(caller.clone());
                    added.push(caller.clone());
                }
            }
            catalog
                .extra_callers
                .entry(role.clone())
                .or_default()
                .insert(endpoint.clone(), added);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
