//! `svc config check`: validate a config file without starting anything.

use std::path::Path;
use std::process::ExitCode;

use super::{fail, EXIT_USAGE};
use crate::platform::config::Config;

pub fn run(path: &Path) -> ExitCode {
    match Config::load(Some(path)) {
        Ok(_) => {
            println!("{}: ok", path.display());
            ExitCode::SUCCESS
        }
        Err(e) => fail(EXIT_USAGE, e),
    }
}
