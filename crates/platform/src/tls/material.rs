//! One instance's TLS material — the cluster CA and its own key and certificate — loaded
//! from PEM files and swapped in place when the files change.
//!
//! Guarantees: what is loaded is whole and consistent (the key matches the certificate,
//! the certificate names the expected identity and chains to the CA) or it is not
//! loaded at all — a half-written rotation keeps the previous material and logs why.
//! Connections already open keep the material they were made with; only new handshakes
//! see a reload, so rotation needs no restart and breaks no connection. When to reload
//! is [`crate::reload`]'s business: this is a [`Reloadable`] of three files.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use parking_lot::RwLock;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, UnixTime};
use rustls::server::danger::ClientCertVerifier;
use rustls::server::WebPkiClientVerifier;
use rustls::sign::CertifiedKey;
use rustls::RootCertStore;

use super::identity;
use crate::config::TlsFiles;
use crate::reload::Reloadable;

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("{path}: cannot read: {reason}")]
    Read { path: String, reason: String },
    #[error("{path}: no PEM certificate in the file")]
    NoCertificate { path: String },
    #[error("{path}: not a usable private key: {reason}")]
    BadKey { path: String, reason: String },
    #[error("{key}: this key does not belong to the certificate {cert}")]
    KeyMismatch { cert: String, key: String },
    #[error("{path}: {reason}")]
    BadCa { path: String, reason: String },
    #[error("{path}: the certificate names no svc role (URI SAN spiffe://svc/role/<role>)")]
    NoIdentity { path: String },
    #[error("{path}: the certificate is for role `{found}`, this instance runs `{expected}`")]
    WrongIdentity {
        path: String,
        expected: String,
        found: String,
    },
    #[error("{path}: the certificate is not valid now ({reason})")]
    NotValid { path: String, reason: String },
}

/// What one load of the files produced.
struct Loaded {
    key: Arc<CertifiedKey>,
    client_verifier: Arc<dyn ClientCertVerifier>,
    server_verifier: Arc<WebPkiServerVerifier>,
}

/// The live material of one instance; cheap to share, swapped on reload.
pub struct TlsMaterial {
    files: TlsFiles,
    identity: String,
    provider: Arc<CryptoProvider>,
    current: RwLock<Arc<Loaded>>,
}

impl std::fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("identity", &self.identity)
            .field("cert", &self.files.cert)
            .finish_non_exhaustive()
    }
}

impl TlsMaterial {
    /// Loads the files for `identity` (the role this process runs, or `operator`).
    pub(crate) fn load(files: TlsFiles, identity: &str) -> Result<Arc<TlsMaterial>, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let loaded = load_files(&files, identity, &provider)?;
        Ok(Arc::new(TlsMaterial {
            files,
            identity: identity.to_string(),
            provider,
            current: RwLock::new(Arc::new(loaded)),
        }))
    }

    pub(crate) fn provider(&self) -> &Arc<CryptoProvider> {
        &self.provider
    }

    pub(crate) fn certified_key(&self) -> Arc<CertifiedKey> {
        self.current.read().key.clone()
    }

    pub(crate) fn client_verifier(&self) -> Arc<dyn ClientCertVerifier> {
        self.current.read().client_verifier.clone()
    }

    pub(crate) fn server_verifier(&self) -> Arc<WebPkiServerVerifier> {
        self.current.read().server_verifier.clone()
    }

    /// Loads the files again and swaps them in if they are consistent.
    fn reload(&self) -> Result<(), TlsError> {
        let loaded = load_files(&self.files, &self.identity, &self.provider)?;
        *self.current.write() = Arc::new(loaded);
        Ok(())
    }
}

impl Reloadable for TlsMaterial {
    fn what(&self) -> &'static str {
        "tls certificates"
    }

    fn which(&self) -> String {
        self.identity.clone()
    }

    fn files(&self) -> Vec<PathBuf> {
        vec![
            self.files.ca.clone(),
            self.files.cert.clone(),
            self.files.key.clone(),
        ]
    }

    fn reload(&self) -> anyhow::Result<String> {
        TlsMaterial::reload(self)?;
        Ok("new connections use them".into())
    }
}

fn load_files(
    files: &TlsFiles,
    identity: &str,
    provider: &Arc<CryptoProvider>,
) -> Result<Loaded, TlsError> {
    let chain = read_certs(&files.cert)?;
    let key_der = read_key(&files.key)?;
    let signing_key = provider
        .key_provider
        .load_private_key(key_der)
        .map_err(|e| TlsError::BadKey {
            path: show(&files.key),
            reason: e.to_string(),
        })?;
    let key = CertifiedKey::new(chain, signing_key);
    key.keys_match().map_err(|_| TlsError::KeyMismatch {
        cert: show(&files.cert),
        key: show(&files.key),
    })?;
    let leaf = &key.cert[0];
    match identity::role_of(leaf) {
        None => {
            return Err(TlsError::NoIdentity {
                path: show(&files.cert),
            })
        }
        Some(found) if found != identity => {
            return Err(TlsError::WrongIdentity {
                path: show(&files.cert),
                expected: identity.to_string(),
                found,
            })
        }
        Some(_) => {}
    }

    let mut roots = RootCertStore::empty();
    for ca in read_certs(&files.ca)? {
        roots.add(ca).map_err(|e| TlsError::BadCa {
            path: show(&files.ca),
            reason: format!("not a usable CA certificate: {e}"),
        })?;
    }
    let roots = Arc::new(roots);
    let client_verifier =
        WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::BadCa {
                path: show(&files.ca),
                reason: e.to_string(),
            })?;
    let server_verifier =
        WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
            .build()
            .map_err(|e| TlsError::BadCa {
                path: show(&files.ca),
                reason: e.to_string(),
            })?;
    // Our own certificate must pass the check every peer will make of it.
    client_verifier
        .verify_client_cert(leaf, &key.cert[1..], UnixTime::now())
        .map_err(|e| TlsError::NotValid {
            path: show(&files.cert),
            reason: format!("checked against {}: {e}", show(&files.ca)),
        })?;
    Ok(Loaded {
        key: Arc::new(key),
        client_verifier,
        server_verifier,
    })
}

pub(super) fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read(path)?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| TlsError::Read {
            path: show(path),
            reason: format!("bad PEM: {e}"),
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificate { path: show(path) });
    }
    Ok(certs)
}

pub(super) fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let bytes = read(path)?;
    // The parser's message never quotes key material.
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::BadKey {
        path: show(path),
        reason: e.to_string(),
    })
}

fn read(path: &Path) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|e| TlsError::Read {
        path: show(path),
        reason: e.to_string(),
    })
}

fn show(path: &Path) -> String {
    PathBuf::from(path).display().to_string()
}
