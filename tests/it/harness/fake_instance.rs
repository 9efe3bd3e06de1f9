//! A stand-in for an instance of a role svc does not contain (a role from a file): an
//! HTTPS server presenting that role's certificate, which records the JSON bodies
//! POSTed to it and answers 200, and keeps a registration at a registry like a real
//! instance would (registers, renews until dropped).
//!
//! It serves on its own thread with its own actix system, so a test on any tokio
//! runtime can use it; dropping it stops the server, joins that thread and stops
//! renewing.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use actix_web::{web, App, HttpResponse, HttpServer};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use serde_json::{json, Value};

use super::pki::{client_of, TEST_API_KEY};
use super::sandbox::RENEW_INTERVAL;

/// An HTTPS server with `role`'s certificate recording what it is sent.
pub struct FakeInstance {
    pub role: String,
    /// `https://127.0.0.1:<port>`: what it registers.
    pub url: String,
    received: Arc<Mutex<Vec<(String, Value)>>>,
    server: actix_web::dev::ServerHandle,
    thread: Option<JoinHandle<()>>,
    renewals: Option<tokio::task::JoinHandle<()>>,
}

impl FakeInstance {
    /// Serves with `<pki>/<role>.crt` and `.key` (which must name 127.0.0.1).
    pub fn start(pki: &Path, role: &str) -> FakeInstance {
        let tls = server_config(pki, role);
        let received = Arc::new(Mutex::new(Vec::new()));
        let (bound, listening) = std::sync::mpsc::channel();
        let record = received.clone();
        let thread = std::thread::spawn(move || {
            actix_web::rt::System::new().block_on(async move {
                let server = HttpServer::new(move || {
                    let record = record.clone();
                    App::new().default_service(web::post().to(
                        move |req: actix_web::HttpRequest, body: web::Json<Value>| {
                            let record = record.clone();
                            async move {
                                let path = req.path().to_string();
                                record.lock().unwrap().push((path, body.into_inner()));
                                HttpResponse::Ok().json(json!({}))
                            }
                        },
                    ))
                })
                .workers(1)
                .disable_signals()
                .bind_rustls_0_23("127.0.0.1:0", tls)
                .expect("bind the fake instance");
                let address = server.addrs()[0];
                let server = server.run();
                bound.send((address, server.handle())).unwrap();
                let _ = server.await;
            });
        });
        let (address, server) = listening.recv().expect("the fake instance is listening");
        FakeInstance {
            role: role.to_string(),
            url: format!("https://{address}"),
            received,
            server,
            thread: Some(thread),
            renewals: None,
        }
    }

    /// Registers as `instance_id` at `registry` with `<pki>/<role>.crt`, and renews the
    /// lease until dropped; returns the registry's answer (status, body).
    pub async fn register(
        &mut self,
        pki: &Path,
        registry: &str,
        instance_id: &str,
    ) -> (u16, String) {
        let client = client_of(pki, &self.role, TEST_API_KEY);
        let registration = json!({
            "role": self.role, "instance_id": instance_id, "address": self.url,
            "version": "0.1.0", "metadata": {}
        });
        let res = client
            .post(format!("{registry}/v1/instances"))
            .json(&registration)
            .send()
            .await
            .expect("register the fake instance");
        let answer = (res.status().as_u16(), res.text().await.unwrap_or_default());
        if answer.0 == 200 {
            let lease = format!("{registry}/v1/instances/{}/{instance_id}/lease", self.role);
            self.renewals = Some(tokio::spawn(async move {
                loop {
                    let _ = client.put(&lease).send().await;
                    tokio::time::sleep(RENEW_INTERVAL).await;
                }
            }));
        }
        answer
    }

    /// Every body received so far, with its path, in order.
    pub fn received(&self) -> Vec<(String, Value)> {
        self.received.lock().unwrap().clone()
    }
}

impl Drop for FakeInstance {
    fn drop(&mut self) {
        if let Some(renewals) = self.renewals.take() {
            renewals.abort();
        }
        // Stopping only sends a command to the server's own thread.
        futures::executor::block_on(self.server.stop(false));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// TLS 1.3 with `role`'s certificate; callers present theirs, which is not checked.
fn server_config(pki: &Path, role: &str) -> rustls::ServerConfig {
    let certs: Vec<CertificateDer<'static>> =
        CertificateDer::pem_file_iter(pki.join(format!("{role}.crt")))
            .expect("certificate")
            .collect::<Result<_, _>>()
            .expect("certificate");
    let key = PrivateKeyDer::from_pem_file(pki.join(format!("{role}.key"))).expect("key");
    rustls::ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a certificate that fits its key")
}
