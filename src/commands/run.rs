//! `svc run --role R`: one instance of one role, in the foreground.

use std::process::ExitCode;

use super::{fail, EXIT_FAILURE, EXIT_USAGE};
use crate::cli::RunArgs;
use crate::config::{Config, Overrides};
use crate::roles;
use crate::roles::gateway::settings::GatewayOverrides;
use crate::roles::RoleLookupError;
use crate::sidecar::{self, settings::AppOverrides};
use svc_platform::config::{self as platform, ConfigError};
use svc_platform::manifest::{Manifest, RoleCatalog};
use svc_platform::role::RoleStart;
use svc_platform::shards::ShardCounts;
use svc_platform::tls::TlsError;
use svc_platform::{lifecycle, telemetry};

pub fn run(args: RunArgs) -> ExitCode {
    let flags_origin = "command line / SVC_* environment";
    let shards = match args
        .shards
        .as_deref()
        .map(ShardCounts::parse_list)
        .transpose()
    {
        Ok(shards) => shards,
        Err(reason) => {
            return fail(
                EXIT_USAGE,
                ConfigError {
                    file: flags_origin.to_string(),
                    key: "shards".to_string(),
                    reason,
                },
            )
        }
    };
    let origin = args
        .config
        .as_ref()
        .map(|p| format!("{} + {flags_origin}", p.display()))
        .unwrap_or_else(|| flags_origin.to_string());
    let config = Config::load(args.config.as_deref()).and_then(|c| {
        c.apply(Overrides {
            platform: platform::Overrides {
                listen: args.listen,
                data_dir: args.data_dir,
                registries: args.registries,
                instance_id: args.instance_id,
                log_format: args.log_format,
                log_file: args.log_file,
                shard: args.shard,
                shards,
                tls_dir: args.tls_dir,
                roles_dir: args.roles_dir,
            },
            gateway: GatewayOverrides {
                api_keys_file: args.api_keys_file,
            },
            app: AppOverrides { url: args.app },
        })
    });
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    // The catalog (built-in roles and roles from files) is built once, here, and
    // passed to everything that asks for "all roles".
    let catalog = match roles::catalog(&config.platform.roles, &origin) {
        Ok(catalog) => catalog,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let (start, manifest) = match role_start(&catalog, &args.role, &config) {
        Ok(found) => found,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    // Which roles are sharded, and whether this shard exists, only the catalog knows.
    if let Err(e) = config.check_for_role(&origin, &manifest, &catalog) {
        return fail(EXIT_USAGE, e);
    }
    let instance_id = config
        .platform
        .instance_id
        .clone()
        .unwrap_or_else(lifecycle::default_instance_id);
    let log_file = match config
        .platform
        .log_file
        .as_deref()
        .map(telemetry::open_log_file)
    {
        Some(Err(e)) => return fail(EXIT_FAILURE, e),
        Some(Ok(file)) => Some(file),
        None => None,
    };
    let telemetry = match telemetry::init(
        config.platform.log_format,
        &manifest.name,
        &instance_id,
        log_file,
        &config.platform.otlp,
    ) {
        Ok(telemetry) => telemetry,
        Err(e) => return fail(EXIT_FAILURE, e),
    };
    let result = actix_web::rt::System::new().block_on(lifecycle::run(
        start,
        manifest,
        catalog,
        config.platform.clone(),
        instance_id,
        config.public_head_timeout(),
    ));
    // Stopped or failed: what is still queued for the collector goes now.
    telemetry.shutdown();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!(error = %format!("{e:#}"), "instance failed");
            // Missing or unreadable certificates are configuration: exit 2, which the
            // systemd unit does not restart (RestartPreventExitStatus=2).
            let code = if e.downcast_ref::<TlsError>().is_some() {
                EXIT_USAGE
            } else {
                EXIT_FAILURE
            };
            fail(code, format!("{e:#}"))
        }
    }
}

/// What runs as `name`: its built-in entry, or for a role from a file with `app.url`
/// set, the sidecar of that application.
fn role_start<'a>(
    catalog: &RoleCatalog,
    name: &str,
    config: &'a Config,
) -> Result<(RoleStart<'a>, Manifest), RoleLookupError> {
    match (roles::find(catalog, name), &config.app.url) {
        (Ok(_), Some(_)) => Err(RoleLookupError::BuiltInWithApp {
            name: name.to_string(),
        }),
        (Ok((entry, manifest)), None) => Ok((entry.start_with(config), manifest)),
        (Err(RoleLookupError::NeedsApp { .. }), Some(_)) => {
            let manifest = catalog.get(name).expect("found as a role from a file");
            Ok((sidecar::start_with(&config.app), manifest.clone()))
        }
        (Err(e), _) => Err(e),
    }
}
