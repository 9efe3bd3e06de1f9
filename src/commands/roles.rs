//! `svc roles`: the roles of the catalog, from their manifests: the built-in ones and
//! the roles from files (`roles.dir`, `--roles-dir`), then every endpoint with the
//! callers it accepts, a caller the manifest does not list marked `+` (one added by
//! `roles.extra_callers`, or a role from a file at the registry, where it registers).

use std::process::ExitCode;

use svc_platform::manifest::{RoleCatalog, RoleSource};

use super::{fail, load_catalog, EXIT_USAGE};
use crate::cli::CatalogArgs;

pub fn run(args: &CatalogArgs) -> ExitCode {
    match load_catalog(args) {
        Ok(catalog) => {
            print!("{}", render(&catalog));
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_USAGE, e),
    }
}

/// The three tables: manifests, descriptions with their source, endpoints.
fn render(catalog: &RoleCatalog) -> String {
    let mut out = format!(
        "{:<14} {:<6} {:<9} {:<34} {:<34} CONSUMES\n",
        "ROLE", "PORT", "STATEFUL", "CALLS", "PUBLISHES"
    );
    let list = |v: &[String]| {
        if v.is_empty() {
            "-".to_string()
        } else {
            v.join(",")
        }
    };
    for m in catalog.iter() {
        let port = if m.port == 0 {
            "any".to_string()
        } else {
            m.port.to_string()
        };
        out += &format!(
            "{:<14} {:<6} {:<9} {:<34} {:<34} {}\n",
            m.name,
            port,
            if m.stateful { "yes" } else { "no" },
            list(&m.calls),
            list(&m.publishes),
            list(&m.consumes)
        );
    }
    out.push('\n');
    for (m, source) in catalog.with_sources() {
        out += &format!("{:<14} {}", m.name, m.description);
        if let RoleSource::File(path) = source {
            out += &format!(" (from {})", path.display());
        }
        out.push('\n');
    }
    out += &format!(
        "\n{:<14} {:<44} CALLERS (+: not in the manifest: roles.extra_callers, or a role \
         from a file at the registry)\n",
        "ROLE", "ENDPOINT"
    );
    for m in catalog.iter() {
        for (endpoint, callers) in m.endpoint_callers() {
            let callers: Vec<String> = callers
                .iter()
                .map(|c| match catalog.is_extra_caller(&m.name, endpoint, c) {
                    true => format!("+{c}"),
                    false => c.clone(),
                })
                .collect();
            out += &format!("{:<14} {endpoint:<44} {}\n", m.name, callers.join(", "));
        }
    }
    out
}
