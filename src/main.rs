//! The `svc` binary: parse the command line and hand over to the command.

use clap::Parser;

fn main() -> std::process::ExitCode {
    let cli = svc::cli::Cli::parse();
    svc::commands::dispatch(cli)
}
