//! `svc config check`: validate a config file (and the API keys file it names) without
//! starting anything.

use std::path::Path;
use std::process::ExitCode;

use super::{fail, EXIT_USAGE};
use crate::config::Config;
use crate::roles;

pub fn run(path: &Path) -> ExitCode {
    let origin = path.display().to_string();
    // The gateway's keys file too, when one is named and present: a bad entry would stop
    // a gateway. A missing one matters only where a gateway runs, so it is a warning.
    let checked = Config::load(Some(path)).and_then(|c| {
        c.check_catalog(&origin, &roles::catalog())?;
        match &c.gateway.api_keys_file {
            Some(keys) if !keys.exists() => {
                eprintln!(
                    "warning: gateway.api_keys_file {} does not exist: a gateway started with this config stops",
                    keys.display()
                );
                Ok(())
            }
            _ => c.gateway.all_keys(&origin).map(|_| ()),
        }
    });
    match checked {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_USAGE, e),
    }
}
