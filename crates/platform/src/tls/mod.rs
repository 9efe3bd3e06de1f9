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
pub use material::{TlsError, TlsMaterial};
pub use server_side::PeerIdentity;
pub(crate) use server_side::{record_peer, server_config};
