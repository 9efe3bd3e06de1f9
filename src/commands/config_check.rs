//! `svc config check`: validate a config file without starting anything.

use std::path::Path;
use std::process::ExitCode;

use super::{fail, EXIT_USAGE};
use crate::platform::config::Config;
use crate::roles;

pub fn run(path: &Path) -> ExitCode {
    let origin = path.display().to_string();
    let checked =
        Config::load(Some(path)).and_then(|c| c.check_catalog(&origin, &roles::catalog()));
    match checked {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_USAGE, e),
    }
}
