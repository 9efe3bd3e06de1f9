//! The certificate of the gateway's public listener (`tls.public_cert`, `tls.public_key`):
//! the one the public sees, issued by whoever the public trusts, not by the cluster CA.
//!
//! Like the internal material ([`super::TlsMaterial`]) it is a [`Reloadable`], reloaded
//! in place when its files change ([`crate::reload`]), and it is taken only whole: a key that does not match the certificate,
//! or a file half copied, keeps the certificate in use. It is the public listener's
//! certificate resolver, so each new handshake takes the certificate of the moment and
//! connections already open keep the one they began with.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::crypto::CryptoProvider;
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::material::{read_certs, read_key, TlsError};
use crate::reload::Reloadable;

/// The public listener's live certificate and key; swapped on reload.
pub(crate) struct PublicCert {
    cert: PathBuf,
    key: PathBuf,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<CertifiedKey>>,
}

impl std::fmt::Debug for PublicCert {
    /// Paths only, never the key.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicCert")
            .field("cert", &self.cert)
            .field("key", &self.key)
            .finish_non_exhaustive()
    }
}

impl PublicCert {
    /// Loads the certificate chain in `cert` and its private key in `key`.
    pub(crate) fn load(cert: &Path, key: &Path) -> Result<Arc<PublicCert>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = load_files(cert, key, &provider)?;
        Ok(Arc::new(PublicCert {
            cert: cert.to_path_buf(),
            key: key.to_path_buf(),
            provider,
            current: RwLock::new(loaded),
        }))
    }

    pub(crate) fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    /// The certificate and key new handshakes use.
    fn certified_key(&self) -> Arc<CertifiedKey> {
        self.current.read().clone()
    }

    /// Loads the files again and swaps them in if the key matches the certificate.
    fn reload(&self) -> Result<(), TlsError> {
        let loaded = load_files(&self.cert, &self.key, &self.provider)?;
        *self.current.write() = loaded;
        Ok(())
    }
}

impl Reloadable for PublicCert {
    fn what(&self) -> &'static str {
        "tls certificates"
    }

    fn which(&self) -> String {
        "public".into()
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![self.cert.clone(), self.key.clone()]
    }

    fn reload(&self) -> anyhow::Result<String> {
        PublicCert::reload(self)?;
        Ok("new connections use them".into())
    }
}

impl ResolvesServerCert for PublicCert {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.certified_key())
    }
}

fn load_files(
    cert: &Path,
    key: &Path,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<CertifiedKey>, TlsError> {
    let chain = read_certs(cert)?;
    let signing_key = provider
        .key_provider
        .load_private_key(read_key(key)?)
        .map_err(|e| TlsError::BadKey {
            path: key.display().to_string(),
            reason: e.to_string(),
        })?;
    let certified = CertifiedKey::new(chain, signing_key);
    certified.keys_match().map_err(|_| TlsError::KeyMismatch {
        cert: cert.display().to_string(),
        key: key.display().to_string(),
    })?;
    Ok(Arc::new(certified))
}
