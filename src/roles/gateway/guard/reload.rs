//! Reloading the API keys without a restart: the keys file (`gateway.api_keys_file`) is a
//! [`Reloadable`] watched by the platform's [`reload`] like the certificates: checked
//! every `tls.reload_interval` (by modification time and size) and read at once on
//! SIGHUP; what it holds, with the config's `gateway.api_keys`, replaces the guard's keys.
//!
//! It is paced by `tls.reload_interval` on purpose: one interval says how soon any
//! rotated secret file (certificate or keys) is taken, and one SIGHUP reloads them all.
//!
//! Guarantees: a file that cannot be read or holds an entry that does not check out is
//! not taken — the keys in use stay, a warning names the file and the entry, and the
//! next check tries again; requests already admitted are not affected; the log names
//! keys, never shows a key or a hash.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use crate::roles::gateway::settings::GatewaySettings;
use svc_platform::reload::{self, ReloadHub, Reloadable, Stamp, Watched};
use svc_platform::shutdown::Shutdown;

use super::Guard;

/// The guard's keys, as read from the config and its keys file.
struct ApiKeys {
    guard: Guard,
    settings: GatewaySettings,
    file: PathBuf,
}

impl Reloadable for ApiKeys {
    fn what(&self) -> &'static str {
        "api keys"
    }

    fn which(&self) -> String {
        self.file.display().to_string()
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.file.clone()]
    }

    /// Reads every key again and gives them to the guard; says which keys are in use.
    fn reload(&self) -> anyhow::Result<String> {
        let keys = self.settings.all_keys("config")?;
        self.guard
            .replace_keys(&keys)
            .map_err(|e| anyhow::anyhow!(e))?;
        let names: Vec<String> = keys.into_iter().map(|k| k.name).collect();
        if names.is_empty() {
            tracing::warn!(
                file = %self.file.display(),
                "api keys reloaded: NO key left, every /api/v1 request is refused with 401"
            );
        }
        Ok(format!("keys {} ({})", names.join(","), names.len()))
    }
}

/// The stamp of the keys file of `settings` now, if it has one. Take it before reading
/// the file: a file replaced while it is read is then seen as changed at the next check.
pub fn stamp(settings: &GatewaySettings) -> Option<Stamp> {
    let file = settings.api_keys_file.as_ref()?;
    Some(Stamp::of(&[file]))
}

/// Keeps `guard`'s keys those of `settings` (its `api_keys_file` read again when it
/// changed, `seen` being its stamp when the keys in use were read), until `shutdown`.
/// Without an `api_keys_file` there is nothing to reload and no task.
pub fn spawn(
    guard: Guard,
    settings: GatewaySettings,
    seen: Option<Stamp>,
    interval: Duration,
    hub: &ReloadHub,
    shutdown: Shutdown,
) {
    let (Some(file), Some(seen)) = (settings.api_keys_file.clone(), seen) else {
        return;
    };
    let keys = Arc::new(ApiKeys {
        guard,
        settings,
        file,
    });
    reload::spawn(vec![Watched::since(keys, seen)], interval, hub, shutdown);
}
