//! What an instance does with its `tls:` settings at start-up: load its material (or say
//! loudly that it runs without), keep it fresh, and build the public listener's config.
//!
//! Start-up errors name the file and the config key it came from; a reload that fails
//! keeps the previous material and logs why, so a bad rotation never takes an instance
//! down.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use super::material::{read_certs, read_key, TlsError, TlsMaterial};
use crate::platform::config::TlsSettings;
use crate::platform::listener::Transport;
use crate::platform::shutdown::Shutdown;

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

/// The transport of the public listener: TLS when a public certificate is configured.
pub fn public_transport(settings: &TlsSettings) -> anyhow::Result<Transport> {
    let (Some(cert), Some(key)) = (&settings.public_cert, &settings.public_key) else {
        return Ok(Transport::Plain);
    };
    let config = public_server_config(cert, key).context("tls.public_cert / tls.public_key")?;
    Ok(Transport::PublicTls(Arc::new(config)))
}

fn public_server_config(
    cert: &std::path::Path,
    key: &std::path::Path,
) -> Result<rustls::ServerConfig, TlsError> {
    let chain = read_certs(cert)?;
    let key_der = read_key(key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("the ring provider supports TLS 1.2 and 1.3")
        .with_no_client_auth()
        .with_single_cert(chain, key_der)
        .map_err(|e| TlsError::BadKey {
            path: key.display().to_string(),
            reason: e.to_string(),
        })
}

/// Checks the files every `interval` and on SIGHUP, and swaps in what changed.
pub fn spawn_reloader(material: Arc<TlsMaterial>, interval: Duration, shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut hangup = match signal(SignalKind::hangup()) {
            Ok(s) => Some(s),
            Err(e) => {
                tracing::warn!(error = %e, "cannot watch SIGHUP; certificates reload on change only");
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
            let result = if forced {
                material.reload().map(|()| true)
            } else {
                material.reload_if_changed()
            };
            match result {
                Ok(true) => tracing::info!(
                    identity = material.identity(),
                    forced,
                    "tls certificates reloaded; new connections use them"
                ),
                Ok(false) => {}
                Err(e) => tracing::warn!(
                    error = %e,
                    "tls certificates not reloaded; the previous ones stay in use"
                ),
            }
        }
    });
}
