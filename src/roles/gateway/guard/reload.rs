//! Reloading the API keys without a restart: the keys file (`gateway.api_keys_file`) is
//! checked every `tls.reload_interval` (by modification time and size) and read at once
//! on SIGHUP, like the certificates; what it holds, with the config's `gateway.api_keys`,
//! replaces the guard's keys.
//!
//! Guarantees: a file that cannot be read or holds an entry that does not check out is
//! not taken — the keys in use stay, a warning names the file and the entry, and the
//! next check tries again; requests already admitted are not affected; the log names
//! keys, never shows a key or a hash.

use std::path::Path;
use std::time::{Duration, SystemTime};

use crate::roles::gateway::settings::GatewaySettings;
use svc_platform::shutdown::Shutdown;
use svc_platform::tls::setup;

use super::Guard;

/// Modification time and size of the keys file; `None` when it cannot be read.
pub type Stamp = Option<(SystemTime, u64)>;

/// The stamp of `path` now. Take it before reading the file: a file replaced while it
/// is read is then seen as changed at the next check.
pub fn stamp(path: &Path) -> Stamp {
    let meta = std::fs::metadata(path).ok()?;
    Some((meta.modified().ok()?, meta.len()))
}

/// Keeps `guard`'s keys those of `settings` (its `api_keys_file` read again when it
/// changed, `seen` being its stamp when the keys in use were read), until `shutdown`.
/// Without an `api_keys_file` there is nothing to reload and no task.
pub fn spawn(
    guard: Guard,
    settings: GatewaySettings,
    seen: Stamp,
    interval: Duration,
    shutdown: Shutdown,
) {
    let Some(path) = settings.api_keys_file.clone() else {
        return;
    };
    let mut seen = seen;
    setup::spawn_checker("api keys", interval, shutdown, move |forced| {
        let now = stamp(&path);
        if !forced && now == seen {
            return;
        }
        match reload(&guard, &settings) {
            Ok(names) => {
                seen = now;
                if names.is_empty() {
                    tracing::warn!(
                        file = %path.display(),
                        forced,
                        "api keys reloaded: NO key left, every /api/v1 request is refused with 401"
                    );
                } else {
                    tracing::info!(
                        file = %path.display(),
                        keys = %names.join(","),
                        count = names.len(),
                        forced,
                        "api keys reloaded"
                    );
                }
            }
            // Kept unseen: tried again at the next check, in case it was half written.
            Err(e) => tracing::warn!(
                error = %e,
                "api keys not reloaded; the keys in use stay"
            ),
        }
    });
}

/// Reads every key again and gives them to `guard`; the names of the keys now in use.
fn reload(guard: &Guard, settings: &GatewaySettings) -> Result<Vec<String>, String> {
    let keys = settings.all_keys("config").map_err(|e| e.to_string())?;
    guard.replace_keys(&keys)?;
    Ok(keys.into_iter().map(|k| k.name).collect())
}
