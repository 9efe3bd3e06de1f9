//! The calling side of mutual TLS: a rustls client config that presents this instance's
//! certificate and checks the callee's against the cluster CA, for every HTTP client.
//!
//! Both the certificate presented and the CA checked against are read from
//! [`TlsMaterial`] at each handshake, so a reload applies to new connections while
//! pooled ones stay up. TLS 1.3 only.

use std::sync::Arc;

use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::ResolvesClientCert;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};

use super::identity;
use super::material::TlsMaterial;

/// A reqwest builder for internal calls: mutual TLS with `tls`, plain HTTP without.
/// With `callee`, a handshake also fails unless the server's certificate names that role.
/// With `tls`, a URL that is not `https` is refused before anything is sent: an
/// `http://` address (registered by mistake or by an attacker) never gets a request in
/// clear text.
///
/// Its pool drops an idle connection before our servers would close it
/// ([`crate::listener::KEEP_ALIVE`]): a request is then never written into a connection
/// the server is closing at that instant, HTTP/1.1's one unanswerable race.
pub fn http_client_builder(
    tls: Option<&Arc<TlsMaterial>>,
    callee: Option<&str>,
) -> reqwest::ClientBuilder {
    super::use_ring_by_default();
    let builder = reqwest::Client::builder().pool_idle_timeout(POOL_IDLE);
    match tls {
        Some(material) => builder
            .use_preconfigured_tls(client_config_for(material, callee))
            .https_only(true),
        None => builder,
    }
}

/// How long an internal client keeps an idle connection: below the servers' keep-alive.
const POOL_IDLE: std::time::Duration =
    crate::listener::KEEP_ALIVE.saturating_sub(std::time::Duration::from_secs(1));

/// Presents `material`'s certificate; checks the server's against the cluster CA.
pub fn client_config(material: &Arc<TlsMaterial>) -> ClientConfig {
    client_config_for(material, None)
}

fn client_config_for(material: &Arc<TlsMaterial>, callee: Option<&str>) -> ClientConfig {
    ClientConfig::builder_with_provider(material.provider().clone())
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("the ring provider supports TLS 1.3")
        .dangerous()
        // Not a weaker check: it delegates to webpki with the CA of the moment.
        .with_custom_certificate_verifier(Arc::new(CurrentCa {
            material: material.clone(),
            callee: callee.map(str::to_string),
        }))
        .with_client_cert_resolver(Arc::new(CurrentKey(material.clone())))
}

#[derive(Debug)]
struct CurrentKey(Arc<TlsMaterial>);

impl ResolvesClientCert for CurrentKey {
    fn resolve(&self, _hints: &[&[u8]], _schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        Some(self.0.certified_key())
    }

    fn has_certs(&self) -> bool {
        true
    }
}

#[derive(Debug)]
struct CurrentCa {
    material: Arc<TlsMaterial>,
    /// The role the server must be, when the caller knows it.
    callee: Option<String>,
}

impl ServerCertVerifier for CurrentCa {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let verified = self.material.server_verifier().verify_server_cert(
            end_entity,
            intermediates,
            server_name,
            ocsp_response,
            now,
        )?;
        match (&self.callee, identity::role_of(end_entity)) {
            (Some(want), Some(found)) if *want != found => Err(rustls::Error::General(format!(
                "the server's certificate is for role `{found}`, not `{want}`"
            ))),
            (Some(want), None) => Err(rustls::Error::General(format!(
                "the server's certificate names no role; expected `{want}`"
            ))),
            _ => Ok(verified),
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.material.provider().signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.material.provider().signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.material
            .provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;
    use crate::tls::{pki, setup};

    #[tokio::test]
    async fn with_tls_an_http_address_is_never_dialed() {
        let dir = tempfile::tempdir().unwrap();
        pki::ensure_dev_pki(dir.path(), &["orders"]).unwrap();
        let material = setup::load_identity(dir.path(), "orders").unwrap();
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        listener.set_nonblocking(true).unwrap();
        let url = format!("http://{}/v1/orders", listener.local_addr().unwrap());

        let client = http_client_builder(Some(&material), Some("orders"))
            .timeout(std::time::Duration::from_secs(2))
            .build()
            .unwrap();
        let refused = client.post(&url).body("card").send().await.unwrap_err();
        assert!(refused.is_builder(), "{refused:?}");
        let accepted = listener.accept().map(|_| ());
        assert_eq!(
            accepted.map_err(|e| e.kind()),
            Err(std::io::ErrorKind::WouldBlock),
            "nothing connected"
        );
    }
}
