//! `svc config check`: validate a config file (and the API keys file it names, and the
//! roles from files of its `roles.dir`) without starting anything.

use std::path::Path;
use std::process::ExitCode;

use svc_platform::manifest::RoleSource;

use svc_platform::config::ConfigError;

use super::{fail, EXIT_USAGE};
use crate::config::Config;
use crate::roles;

pub fn run(path: &Path) -> ExitCode {
    let origin = path.display().to_string();
    // The gateway's keys file too, when one is named and present: a bad entry would stop
    // a gateway. A missing one matters only where a gateway runs, so it is a warning.
    let checked = Config::load(Some(path)).and_then(|c| {
        // The roles from files are checked with the rest, and listed when it is ok.
        let catalog = roles::catalog(&c.platform.roles, &origin)
            .map_err(|e| ConfigError::new(&e.file, &e.key, e.reason))?;
        c.check_catalog(&origin, &catalog)?;
        match &c.gateway.api_keys_file {
            Some(keys) if !keys.exists() => {
                eprintln!(
                    "warning: gateway.api_keys_file {} does not exist: a gateway started with this config stops",
                    keys.display()
                );
                Ok(())
            }
            _ => c.gateway.all_keys(&origin).map(|_| ()),
        }?;
        Ok(catalog)
    });
    match checked {
        Ok(catalog) => {
            println!("{}: ok", path.display());
            for (m, source) in catalog.with_sources() {
                if let RoleSource::File(file) = source {
                    println!("role from a file: {} ({})", m.name, file.display());
                }
            }
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_USAGE, e),
    }
}
