//! `svc status`: the registered instances, from the first registry that answers.

use std::process::ExitCode;
use std::time::Duration;

use super::{fail, EXIT_FAILURE};
use crate::cli::StatusArgs;
use crate::platform::registry_api::now_ms;
use crate::platform::registry_client::RegistryClient;

pub fn run(args: StatusArgs) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => return fail(EXIT_FAILURE, e),
    };
    let client = RegistryClient::new(args.registries.clone(), Duration::from_secs(3));
    let (url, catalog) = match runtime.block_on(client.catalog_from_any()) {
        Ok(found) => found,
        Err(e) => {
            return fail(
                EXIT_FAILURE,
                format!("no registry answered ({}): {e}", args.registries.join(", ")),
            )
        }
    };
    println!("registry {url} (index {})", catalog.index);
    println!(
        "{:<14} {:<22} {:<28} {:>9} {:>13} VERSION",
        "ROLE", "INSTANCE", "ADDRESS", "AGE", "LAST RENEWAL"
    );
    let now = now_ms();
    for instances in catalog.roles.values() {
        for i in instances {
            let age = Duration::from_secs(now.saturating_sub(i.registered_at_ms) / 1000);
            let renewed = Duration::from_millis(now.saturating_sub(i.renewed_at_ms));
            println!(
                "{:<14} {:<22} {:<28} {:>9} {:>13} {}",
                i.role,
                i.instance_id,
                i.address,
                humantime::format_duration(age).to_string(),
                format!("{:.1}s ago", renewed.as_secs_f64()),
                i.version
            );
        }
    }
    if catalog.is_empty() {
        println!("(no instances registered)");
    }
    ExitCode::SUCCESS
}
