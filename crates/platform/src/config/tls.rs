//! The `tls:` section: where this instance finds the cluster CA and its own certificate.
//!
//! Every internal connection is mutual TLS by default. The files come from `svc certs`
//! (`ca.crt`, `<role>.crt`, `<role>.key` in one directory); single paths can be given
//! instead. Turning TLS off takes an explicit `insecure: true`, which the instance
//! announces loudly at start-up: it is for debugging, never for a cluster.

use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct TlsSettings {
    /// Directory holding `ca.crt` and `<role>.crt` / `<role>.key` (what `svc certs` writes).
    pub(crate) dir: PathBuf,
    /// The cluster CA bundle (PEM; several certificates while a CA is rotated).
    /// Unset: `<dir>/ca.crt`.
    pub(crate) ca: Option<PathBuf>,
    /// This instance's certificate (PEM). Unset: `<dir>/<role>.crt`.
    pub(crate) cert: Option<PathBuf>,
    /// This instance's private key (PEM). Unset: `<dir>/<role>.key`.
    pub(crate) key: Option<PathBuf>,
    /// Certificate (PEM chain) the public listener (the gateway's) serves; with
    /// `public_key`. Unset: the public API is plain HTTP.
    pub(crate) public_cert: Option<PathBuf>,
    pub(crate) public_key: Option<PathBuf>,
    /// How often the files are checked for changes (SIGHUP reloads at once).
    #[serde(with = "humantime_serde")]
    pub reload_interval: Duration,
    /// Plain HTTP inside the cluster and no caller identities: debugging only.
    pub insecure: bool,
}

impl Default for TlsSettings {
    fn default() -> Self {
        Self {
            dir: PathBuf::from("tls"),
            ca: None,
            cert: None,
            key: None,
            public_cert: None,
            public_key: None,
            reload_interval: Duration::from_secs(5),
            insecure: false,
        }
    }
}

/// The three files one instance of `role` uses, with the config key each came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TlsFiles {
    pub(crate) ca: PathBuf,
    pub(crate) cert: PathBuf,
    pub(crate) key: PathBuf,
}

impl TlsSettings {
    /// The files an instance of `identity` (a role, or `operator`) reads.
    pub(crate) fn files(&self, identity: &str) -> TlsFiles {
        let pick =
            |explicit: &Option<PathBuf>, default: PathBuf| explicit.clone().unwrap_or(default);
        TlsFiles {
            ca: pick(&self.ca, self.dir.join("ca.crt")),
            cert: pick(&self.cert, self.dir.join(format!("{identity}.crt"))),
            key: pick(&self.key, self.dir.join(format!("{identity}.key"))),
        }
    }

    /// The scheme of every internal URL: `https`, or `http` when insecure.
    fn scheme(&self) -> &'static str {
        if self.insecure {
            "http"
        } else {
            "https"
        }
    }

    pub(crate) fn validate(&self, origin: &str) -> Result<(), ConfigError> {
        if self.reload_interval < Duration::from_millis(100) {
            return Err(ConfigError::new(
                origin,
                "tls.reload_interval",
                "must be at least 100ms",
            ));
        }
        if self.public_cert.is_some() != self.public_key.is_some() {
            return Err(ConfigError::new(
                origin,
                "tls.public_cert",
                "public_cert and public_key go together",
            ));
        }
        Ok(())
    }
}

/// Checks that an internal URL's scheme fits the TLS setting.
pub(crate) fn check_scheme(tls: &TlsSettings, url: &str) -> Result<(), String> {
    let want = tls.scheme();
    let (scheme, _) = url.split_once("://").unwrap_or(("", url));
    if scheme == want {
        return Ok(());
    }
    Err(if tls.insecure {
        format!("`{url}`: tls.insecure is set, so internal URLs are http://")
    } else {
        format!("`{url}`: internal traffic is mutual TLS, so internal URLs are https:// (tls.insecure turns TLS off for debugging)")
    })
}
