//! placeholder
use std::process::ExitCode; pub fn run(_a: crate::cli::DevArgs) -> ExitCode { ExitCode::SUCCESS }
