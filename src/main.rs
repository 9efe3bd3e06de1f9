//! The `svc` binary: parse the command line and hand over to the command.

use clap::Parser;

/// mimalloc instead of glibc's malloc: a profile of orders under load spent about 15 %
/// of its CPU in glibc's allocator (many small, short-lived allocations per request,
/// across threads); see docs/MEASUREMENTS.md.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let cli = svc::cli::Cli::parse();
    svc::commands::dispatch(cli)
}
