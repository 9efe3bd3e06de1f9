//! The CLI subcommands. Each file is one command; this is the only place listing them.
//!
//! Exit codes: 0 success, 1 a runtime failure (cannot bind, store locked, registry down),
//! 2 a usage or configuration error (unknown role, bad config value).

mod bench;
mod certs;
mod completions;
mod config_check;
mod dev;
mod keys;
mod man;
mod roles;
mod run;
mod status;
mod trace;
mod ui;

use std::process::ExitCode;

use std::sync::Arc;

use crate::cli::{CatalogArgs, Cli, Command, ConfigCommand, IdentityArgs};
use crate::config::Config;
use svc_platform::config::OVERRIDES_ORIGIN;
use svc_platform::manifest::RoleCatalog;
use svc_platform::tls::{setup, TlsMaterial};

pub const EXIT_FAILURE: u8 = 1;
pub const EXIT_USAGE: u8 = 2;

/// The certificate an operator's tool presents (`None` with `--insecure`); the error
/// names the flags to fix.
fn load_identity(args: &IdentityArgs) -> Result<Option<Arc<TlsMaterial>>, String> {
    if args.insecure {
        return Ok(None);
    }
    setup::load_identity(&args.tls_dir, &args.identity)
        .map(Some)
        .map_err(|e| {
            format!("{e} (--tls-dir, --identity; `svc certs issue --role operator` makes one)")
        })
}

pub fn dispatch(cli: Cli) -> ExitCode {
    // Before any command builds an HTTP client.
    svc_platform::tls::use_ring_by_default();
    match cli.command {
        Command::Run(args) => run::run(args),
        Command::Dev(args) => dev::run(args),
        Command::Status(args) => status::run(args),
        Command::Trace(args) => trace::run(args),
        Command::Ui(args) => ui::run(args),
        Command::Roles(args) => roles::run(&args),
        Command::Bench(args) => bench::run(args),
        Command::Config(ConfigCommand::Check { config }) => config_check::run(&config),
        Command::Certs(command) => certs::run(command),
        Command::Keys(command) => keys::run(command),
        Command::Completions { shell } => completions::run(shell),
        Command::Man { dir } => man::run(dir.as_deref()),
    }
}

/// Writes `text` (what `svc completions` and `svc man` print) to stdout whole; a reader
/// that stopped early (`| head`) is not an error.
fn print_generated(text: &[u8], what: &str) -> ExitCode {
    use std::io::Write as _;
    let mut out = std::io::stdout().lock();
    match out.write_all(text).and_then(|()| out.flush()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_FAILURE, format!("cannot print {what}: {e}")),
    }
}

/// The catalog an operator's command reads: built-in roles and the roles from files of
/// `--roles-dir`, else of the config's `roles.dir` (with its `roles.extra_callers`).
fn load_catalog(args: &CatalogArgs) -> Result<Arc<RoleCatalog>, String> {
    let config = Config::load(args.config.as_deref()).map_err(|e| e.to_string())?;
    let mut settings = config.platform.roles;
    let origin = match (&args.roles_dir, &args.config) {
        (Some(dir), _) => {
            settings.dir = Some(dir.clone());
            args.config.as_ref().map_or_else(
                || OVERRIDES_ORIGIN.to_string(),
                |p| format!("{} + {OVERRIDES_ORIGIN}", p.display()),
            )
        }
        (None, Some(path)) => path.display().to_string(),
        (None, None) => OVERRIDES_ORIGIN.to_string(),
    };
    crate::roles::catalog(&settings, &origin).map_err(|e| e.to_string())
}

/// Prints an error the way every command does and returns `code`.
fn fail(code: u8, message: impl std::fmt::Display) -> ExitCode {
    eprintln!("svc: error: {message}");
    ExitCode::from(code)
}
