//! What an instance does with its `tls:` settings at start-up: load its material (or say
//! loudly that it runs without), build the public listener's config, and keep both
//! fresh (every `tls.reload_interval` and on SIGHUP, through [`crate::reload`]).
//!
//! Start-up errors name the file and the config key it came from; a reload that fails
//! keeps the previous material and logs why, so a bad rotation never takes an instance
//! down.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::material::{TlsError, TlsMaterial};
use super::public_cert::PublicCert;
use crate::config::TlsSettings;
use crate::listener::Transport;
use crate::reload;
use crate::shutdown::Shutdown;

/// The material of an instance of `role`, or `None` when `tls.insecure` is set.
pub(crate) fn load_material(
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
pub(crate) fn public_transport(
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
pub(crate) use crate::reload::Reloadable;

/// Checks the files of each of `items` every `interval` and on SIGHUP, and swaps in
/// what changed ([`crate::reload`]). Nothing to check: no task.
pub(crate) fn spawn_reloader(
    items: Vec<Arc<dyn Reloadable>>,
    interval: Duration,
    hub: &reload::ReloadHub,
    shutdown: Shutdown,
) {
    let watched = items.into_iter().map(reload::Watched::new).collect();
    reload::spawn(watched, interval, hub, shutdown);
}
