//! `svc run --role R`: one instance of one role, in the foreground.

use std::process::ExitCode;

use super::{fail, EXIT_FAILURE, EXIT_USAGE};
use crate::cli::RunArgs;
use crate::platform::config::{Config, Overrides};
use crate::platform::{lifecycle, telemetry};
use crate::roles;

pub fn run(args: RunArgs) -> ExitCode {
    let (entry, manifest) = match roles::find(&args.role) {
        Ok(found) => found,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let config = Config::load(args.config.as_deref()).and_then(|c| {
        c.apply(Overrides {
            listen: args.listen,
            data_dir: args.data_dir,
            registries: args.registries,
            instance_id: args.instance_id,
            log_format: args.log_format,
        })
    });
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let instance_id = config
        .instance_id
        .clone()
        .unwrap_or_else(lifecycle::default_instance_id);
    telemetry::init(config.log_format, &manifest.name, &instance_id);
    let result = actix_web::rt::System::new().block_on(lifecycle::run(
        entry,
        manifest,
        roles::catalog(),
        config,
        instance_id,
    ));
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "instance failed");
            fail(EXIT_FAILURE, format!("{e:#}"))
        }
    }
}
