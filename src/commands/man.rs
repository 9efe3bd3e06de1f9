//! `svc man`: the manual page svc(1) in roff, generated from the clap definitions in
//! `cli.rs` (the same text as `--help`, so the two cannot disagree). With `--dir` it
//! writes svc.1 and one page per subcommand (`svc-run.1`, `svc-certs-issue.1`, ...),
//! which is what `scripts/install.sh` puts under share/man/man1.

use std::path::Path;
use std::process::ExitCode;

use clap::CommandFactory;

use super::{fail, print_generated, EXIT_FAILURE};
use crate::cli::Cli;

pub fn run(dir: Option<&Path>) -> ExitCode {
    let Some(dir) = dir else {
        let mut page = Vec::new();
        return match clap_mangen::Man::new(Cli::command()).render(&mut page) {
            Ok(()) => print_generated(&page, "the manual page"),
            Err(e) => fail(EXIT_FAILURE, format!("cannot render the manual page: {e}")),
        };
    };
    let written =
        std::fs::create_dir_all(dir).and_then(|()| clap_mangen::generate_to(Cli::command(), dir));
    match written {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(
            EXIT_FAILURE,
            format!("cannot write the manual pages to {}: {e}", dir.display()),
        ),
    }
}
