//! What an instance does with its `tls:` settings at start-up: load its material (or say
//! loudly that it runs without), build the public listener's config, and keep both
//! fresh (every `tls.reload_interval` and on SIGHUP).
//!
//! Start-up errors name the file and the config key it came from; a reload that fails
//! keeps the previous material and logs why, so a bad rotation never takes an instance
//! down.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use super::material::{TlsError, TlsMaterial};
use super::public_cert::PublicCert;
use crate::config::TlsSettings;
use crate::listener::Transport;
use crate::shutdown::Shutdown;

/// The material of an instance of `role`, or `None` when `tls.insecure` is set.
pub fn load_material(
    settings: &TlsSettings,
    role: &str,
) -> anyhow::Result<Option<Arc<TlsMaterial>>> {
    if settings.insecure {
        tracing::warn!(
            "tls.insecure is set: internal traffic is PLAIN HTTP and callers are NOT \
             authenticated or authorized; use this only to debug, never in a cluster"
        );
        return Ok(None);
    }
    let files = settings.files(role);
    TlsMaterial::load(files, role)
        .map(Some)
        .context("tls (keys tls.dir, tls.ca, tls.cert, tls.key; `svc certs` makes the files)")
}

/// The material of `identity` (a role, or `operator`) from the files `svc certs` makes
/// in `dir`: what tools and `svc dev` present.
pub fn load_identity(dir: &std::path::Path, identity: &str) -> Result<Arc<TlsMaterial>, TlsError> {
    let settings = TlsSettings {
        dir: dir.to_path_buf(),
        ..TlsSettings::default()
    };
    TlsMaterial::load(settings.files(identity), identity)
}

/// The transport of the public listener: TLS when a public certificate is configured,
/// with that certificate (to reload with the others: see [`spawn_reloader`]).
pub fn public_transport(
    settings: &TlsSettings,
) -> anyhow::Result<(Transport, Option<Arc<PublicCert>>)> {
    let (Some(cert), Some(key)) = (&settings.public_cert, &settings.public_key) else {
        return Ok((Transport::Plain, None));
    };
    let public = PublicCert::load(cert, key).context("tls.public_cert / tls.public_key")?;
    let config = rustls::ServerConfig::builder_with_provider(public.provider().clone())
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_cert_resolver(public.clone());
    Ok((Transport::PublicTls(Arc::new(config)), Some(public)))
}

/// Certificates the reloader keeps fresh: the internal material, the public certificate.
pub trait Reloadable: Send + Sync {
    /// Which certificates, in log lines: the identity, or `public`.
    fn what(&self) -> &str;
    /// Reloads when the files changed; `Ok(false)`: they did not.
    fn reload_if_changed(&self) -> Result<bool, TlsError>;
    /// Reloads now.
    fn reload(&self) -> Result<(), TlsError>;
}

impl Reloadable for TlsMaterial {
    fn what(&self) -> &str {
        self.identity()
    }

    fn reload_if_changed(&self) -> Result<bool, TlsError> {
        TlsMaterial::reload_if_changed(self)
    }

    fn reload(&self) -> Result<(), TlsError> {
        TlsMaterial::reload(self)
    }
}

impl Reloadable for PublicCert {
    fn what(&self) -> &str {
        "public"
    }

    fn reload_if_changed(&self) -> Result<bool, TlsError> {
        PublicCert::reload_if_changed(self)
    }

    fn reload(&self) -> Result<(), TlsError> {
        PublicCert::reload(self)
    }
}

/// Checks the files of each of `items` every `interval` and on SIGHUP, and swaps in
/// what changed. Nothing to check: no task.
pub fn spawn_reloader(items: Vec<Arc<dyn Reloadable>>, interval: Duration, shutdown: Shutdown) {
    if items.is_empty() {
        return;
    }
    spawn_checker("certificates", interval, shutdown, move |forced| {
        for item in &items {
            let result = if forced {
                item.reload().map(|()| true)
            } else {
                item.reload_if_changed()
            };
            match result {
                Ok(true) => tracing::info!(
                    certificates = item.what(),
                    forced,
                    "tls certificates reloaded; new connections use them"
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    certificates = item.what(),
                    error = %e,
                    "tls certificates not reloaded; the previous ones stay in use"
                ),
            }
        }
    });
}

/// Calls `check` every `interval` with `false`, and at once on SIGHUP with `true`
/// (forced), until `shutdown`: what every reload of files an instance reads uses (the
/// certificates here, the gateway's API keys). `what` names them in a warning.
pub fn spawn_checker(
    what: &'static str,
    interval: Duration,
    shutdown: Shutdown,
    mut check: impl FnMut(bool) + Send + 'static,
) {
    tokio::spawn(async move {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; {what} reload on change only");
                None
            }
        };
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let forced = tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => false,
                Some(()) = async {
                    match hangup.as_mut() {
                        Some(h) => h.recv().await,
                        None => std::future::pending().await,
                    }
                } => true,
            };
            check(forced);
        }
    });
}
