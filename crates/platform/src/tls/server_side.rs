//! The serving side of mutual TLS: a rustls server config that requires a client
//! certificate from the cluster CA, and the caller's identity taken from it.
//!
//! The handshake itself refuses a caller without a certificate, with a self-signed or
//! foreign one, or with an expired one: such a caller never reaches a handler. What a
//! verified caller may do is decided per endpoint by [`super::access`], from the role its
//! certificate names. TLS 1.3 only.

use std::any::Any;
use std::sync::Arc;

use actix_tls::accept::rustls_0_23::TlsStream;
use actix_web::dev::Extensions;
use actix_web::rt::net::TcpStream;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, ServerConfig, SignatureScheme};

use super::identity;
use super::material::TlsMaterial;

/// Who is calling, as the handshake proved it. Absent on a plain-HTTP (insecure) server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerIdentity {
    /// The role the certificate names; `None` for a CA-signed certificate naming none.
    pub role: Option<String>,
    /// The hosts the certificate is for (DNS names, IPs): where its holder may serve.
    pub hosts: Vec<String>,
}

pub(crate) fn server_config(material: &Arc<TlsMaterial>) -> ServerConfig {
    ServerConfig::builder_with_provider(material.provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .with_client_cert_verifier(Arc::new(CurrentClientCa(material.clone())))
        .with_cert_resolver(Arc::new(CurrentServerKey(material.clone())))
}

/// `HttpServer::on_connect` hook: records the verified caller of a TLS connection.
pub(crate) fn record_peer(conn: &dyn Any, ext: &mut Extensions) {
    if let Some(tls) = conn.downcast_ref::<TlsStream<TcpStream>>() {
        let (_, session) = tls.get_ref();
        let leaf = session.peer_certificates().and_then(|chain| chain.first());
        ext.insert(PeerIdentity {
            role: leaf.and_then(|leaf| identity::role_of(leaf)),
            hosts: leaf
                .map(|leaf| identity::hosts_of(leaf))
                .unwrap_or_default(),
        });
    }
}

#[derive(Debug)]
struct CurrentServerKey(Arc<TlsMaterial>);

impl ResolvesServerCert for CurrentServerKey {
    fn resolve(&self, _hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }
}

/// Delegates to webpki with the CA of the moment (reloads swap it).
#[derive(Debug)]
struct CurrentClientCa(Arc<TlsMaterial>);

impl ClientCertVerifier for CurrentClientCa {
    fn client_auth_mandatory(&self) -> bool {
        true
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        // Hints are optional; our clients have one certificate and always send it.
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        self.0
            .client_verifier()
            .verify_client_cert(end_entity, intermediates, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .client_verifier()
            .verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0
            .client_verifier()
            .verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.client_verifier().supported_verify_schemes()
    }
}
