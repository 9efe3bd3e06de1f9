//! `svc dev`: the whole system on one machine, one child process per instance.
//!
//! Starts the registry, then every other role, waits until all are ready and
//! registered, prints where everything is, and supervises (restarting crashed children)
//! until SIGINT or SIGTERM. Then it stops the other roles, then the registry, and exits
//! 0 with no child left behind. A start-up failure stops whatever was started and
//! exits 1; a bad flag exits 2 before anything starts.

mod api_key;
mod backoff;
mod child;
mod console;
mod fleet;
mod plan;
mod process;
mod ready;
mod replicas;
mod seed;
mod signals;
mod startup;
mod summary;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use super::{fail, EXIT_FAILURE, EXIT_USAGE};
use crate::cli::DevArgs;
use crate::config::Config;
use crate::roles;
use child::Launcher;
use fleet::Fleet;
use plan::Plan;
use signals::StopSignals;
use startup::{Outcome, StartupError, Watch};
use svc_platform::manifest::{RoleCatalog, OPERATOR};
use svc_platform::tls::{pki, setup, TlsMaterial};

/// Generous for a debug build on a loaded laptop; a healthy start takes about a second.
const STARTUP_TIMEOUT: Duration = Duration::from_secs(60);

pub fn run(mut args: DevArgs) -> ExitCode {
    // The children check the whole file; svc dev only needs to know whether TLS is on,
    // and the roles from files, to make their certificates and tell every child.
    let config = match Config::load(args.config.as_deref()) {
        Ok(config) => config,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let insecure = config.platform.tls.insecure;
    let mut roles_settings = config.platform.roles;
    args.roles_dir = roles_dir(&args, roles_settings.dir.take());
    roles_settings.dir = args.roles_dir.clone();
    let origin = args
        .config
        .as_ref()
        .map_or_else(|| "svc dev".to_string(), |p| p.display().to_string());
    let catalog = match roles::catalog(&roles_settings, &origin) {
        Ok(catalog) => catalog,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    // svc dev starts the built-in roles; a role from a file runs beside its application.
    let plan = match plan::build(&args, &roles::built_in(), insecure) {
        Ok(plan) => plan,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let key = match api_key::ensure(&plan.api_key_file, &plan.api_keys_file) {
        Ok(key) => key,
        Err(e) => {
            let file = plan.api_key_file.display();
            return fail(
                EXIT_FAILURE,
                format!("cannot write the dev API key {file}: {e}"),
            );
        }
    };
    // Same mutual TLS as production: a dev CA and a certificate per role, made once.
    let operator_tls = match &plan.tls_dir {
        Some(dir) => match dev_pki(dir, &catalog) {
            Ok(material) => Some(material),
            Err(e) => return fail(EXIT_FAILURE, e),
        },
        None => None,
    };
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => return fail(EXIT_FAILURE, format!("cannot find the svc executable: {e}")),
    };
    // Current-thread on purpose: PR_SET_PDEATHSIG fires when the *thread* that forked a
    // child exits, so every child is spawned from the main thread, which lives as long
    // as svc dev does.
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => return fail(EXIT_FAILURE, format!("cannot start the async runtime: {e}")),
    };
    match runtime.block_on(dev(plan, exe, operator_tls, key)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_FAILURE, e),
    }
}

#[derive(Debug, thiserror::Error)]
enum DevError {
    #[error("cannot watch SIGINT/SIGTERM: {0}")]
    Signals(#[source] std::io::Error),
    #[error(transparent)]
    Startup(#[from] StartupError),
}

/// The roles directory of the children: `--roles-dir`, else the config's `roles.dir`,
/// else `roles.d/` next to the config file when there is one.
fn roles_dir(args: &DevArgs, configured: Option<PathBuf>) -> Option<PathBuf> {
    let next_to_config = || {
        let dir = args.config.as_ref()?.parent()?.join("roles.d");
        dir.is_dir().then_some(dir)
    };
    args.roles_dir
        .clone()
        .or(configured)
        .or_else(next_to_config)
}

/// Makes (or keeps) the dev CA and certificates in `dir`; returns the operator identity
/// svc dev itself uses to watch the registry.
fn dev_pki(dir: &Path, catalog: &RoleCatalog) -> anyhow::Result<Arc<TlsMaterial>> {
    pki::ensure_dev_pki(dir, &catalog.names())?;
    Ok(setup::load_identity(dir, OPERATOR)?)
}

async fn dev(
    plan: Plan,
    exe: PathBuf,
    tls: Option<Arc<TlsMaterial>>,
    api_key: String,
) -> Result<(), DevError> {
    let started = Instant::now();
    let mut signals = StopSignals::install().map_err(DevError::Signals)?;
    let (events_tx, mut events) = mpsc::unbounded_channel();
    let launcher = Launcher {
        exe,
        label_width: plan.all().map(|s| s.instance_id.len()).max().unwrap_or(0),
        events: events_tx,
    };
    let mut fleet = Fleet::default();
    let mut watch = Watch {
        events: &mut events,
        signals: &mut signals,
        started,
        timeout: STARTUP_TIMEOUT,
    };
    let outcome = startup::start(&plan, &launcher, &mut fleet, &mut watch, tls.as_ref()).await;
    // Ready lines of restarted children need no reader.
    drop(events);

    let signal = match outcome {
        Ok(Outcome::Ready(ready)) => {
            let rows: Vec<_> = plan
                .all()
                .filter_map(|spec| ready.get(&spec.instance_id).map(|line| (spec, line)))
                .collect();
            if let Some((_, edge)) = rows.iter().find(|(spec, _)| spec.edge) {
                let created = seed::load(edge.public_url(), &api_key).await;
                console::note(format!("seed catalog: {created} new products"));
            }
            console::print(&summary::render(&plan, &rows, started.elapsed()));
            signals.recv().await
        }
        Ok(Outcome::Interrupted(signal)) => signal,
        Err(e) => {
            // The error itself is printed last, by the caller, where it is seen.
            console::note("start-up failed; stopping what was started");
            fleet.stop(&mut signals).await;
            return Err(e.into());
        }
    };
    console::note(format!(
        "{signal}: stopping the other roles, then the registry"
    ));
    fleet.stop(&mut signals).await;
    console::note("all stopped");
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;
    use crate::cli::{Cli, Command};

    fn dev_args(args: &[&std::ffi::OsStr]) -> DevArgs {
        let argv = ["svc".as_ref(), "dev".as_ref()]
            .into_iter()
            .chain(args.iter().copied());
        match Cli::parse_from(argv).command {
            Command::Dev(args) => args,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn every_child_gets_the_roles_dir_next_to_the_config_unless_another_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("dev.yaml");
        let args = dev_args(&["--config".as_ref(), config.as_os_str()]);
        assert_eq!(roles_dir(&args, None), None, "no roles.d/: none");
        let roles_d = dir.path().join("roles.d");
        std::fs::create_dir(&roles_d).unwrap();
        assert_eq!(roles_dir(&args, None), Some(roles_d.clone()));
        let configured = PathBuf::from("/etc/svc/roles");
        assert_eq!(roles_dir(&args, Some(configured.clone())), Some(configured));
        let mut args = dev_args(&[
            "--config".as_ref(),
            config.as_os_str(),
            "--roles-dir".as_ref(),
            "elsewhere".as_ref(),
        ]);
        assert_eq!(roles_dir(&args, None), Some(PathBuf::from("elsewhere")));

        args.roles_dir = roles_dir(&args, None);
        let plan = plan::build(&args, &roles::built_in(), false).unwrap();
        for spec in plan.all() {
            let at = spec.args.iter().position(|a| a == "--roles-dir");
            assert_eq!(
                at.map(|i| &spec.args[i + 1]),
                Some(&"elsewhere".into()),
                "{spec:?}"
            );
        }
    }
}
