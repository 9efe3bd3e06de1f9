//! `svc completions SHELL`: the completion script for bash, zsh, fish (or elvish,
//! PowerShell), generated from the clap definitions in `cli.rs`, so it knows every
//! subcommand and flag the binary has and can never fall behind it.

use std::process::ExitCode;

use clap::CommandFactory;
use clap_complete::Shell;

use super::print_generated;
use crate::cli::Cli;

pub fn run(shell: Shell) -> ExitCode {
    let mut command = Cli::command();
    let name = command.get_name().to_string();
    let mut script = Vec::new();
    clap_complete::generate(shell, &mut command, name, &mut script);
    print_generated(&script, "the completion script")
}
