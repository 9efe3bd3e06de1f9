//! Mutual TLS inside the cluster: the PKI that makes the certificates (`svc certs`), the
//! identity (role) a certificate speaks for, each instance's reloadable material, the
//! gateway's reloadable public certificate, and the rustls configs of both sides of a
//! connection.
//!
//! Every internal connection is authenticated both ways by certificates issued from one
//! cluster CA; a certificate names exactly one role, which is who the peer is. What that
//! role may call is decided by [`crate::access`].

mod client_side;
pub mod identity;
mod material;
pub mod pki;
mod public_cert;
mod server_side;
pub mod setup;

pub use client_side::{client_config, http_client_builder};

/// Makes ring the process's default rustls provider: the one reqwest uses for a client
/// not given a TLS config of its own, and it builds one for every client, plain-HTTP
/// ones too (svc's reqwest has no provider of its own, so as not to bring in aws-lc).
/// Called wherever svc builds a client ([`http_client_builder`], the OTLP exporter,
/// the commands); only the first call does anything.
pub fn use_ring_by_default() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        // An error: another provider is the default already, which is then used.
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}
pub use material::{TlsError, TlsMaterial};
pub use server_side::PeerIdentity;
pub(crate) use server_side::{record_peer, server_config};
