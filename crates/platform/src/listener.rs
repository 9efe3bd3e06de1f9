//! One bound listener and how it is served: mutual TLS (every internal listener), TLS
//! with a public certificate or plain HTTP (the gateway's public listener), or plain
//! HTTP everywhere when `tls.insecure` is set.
//!
//! Every listener gets the same connection limits: a client that does not finish its
//! request head (or TLS handshake) in time is disconnected, so slow-loris connections
//! cannot pile up.

use std::fmt;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{body::MessageBody, Request, Response};
use actix_service::{IntoServiceFactory, Service, ServiceFactory};
use actix_web::dev::{AppConfig, Server};
use actix_web::{Error, HttpServer};
use anyhow::Context as _;

use super::tls::{self, TlsMaterial};

/// How a listener speaks.
#[derive(Clone)]
pub enum Transport {
    /// TLS 1.3 with a client certificate from the cluster CA required.
    MutualTls(Arc<TlsMaterial>),
    /// TLS with a certificate the public trusts; no client certificate.
    PublicTls(Arc<rustls::ServerConfig>),
    Plain,
}

impl Transport {
    pub fn scheme(&self) -> &'static str {
        match self {
            Transport::Plain => "http",
            _ => "https",
        }
    }
}

/// Limits of one listener's connections.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    pub workers: usize,
    pub drain_timeout: Duration,
    /// Time a client has to send a whole request head after connecting (or after the
    /// previous response on a kept-alive connection); then 408 and close.
    pub head_timeout: Duration,
}

/// Serves `factory`'s app on `listener`; the returned server runs once awaited.
pub fn serve<F, I, S, B>(
    factory: F,
    listener: TcpListener,
    transport: &Transport,
    limits: Limits,
    connections: prometheus::IntCounter,
) -> anyhow::Result<Server>
where
    F: Fn() -> I + Send + Clone + 'static,
    I: IntoServiceFactory<S, Request>,
    S: ServiceFactory<Request, Config = AppConfig> + 'static,
    S::Error: Into<Error> + 'static,
    S::InitError: fmt::Debug,
    S::Response: Into<Response<B>> + 'static,
    <S::Service as Service<Request>>::Future: 'static,
    S::Service: 'static,
    B: MessageBody + 'static,
{
    let bound = listener.local_addr()?;
    let server = HttpServer::new(factory)
        .workers(limits.workers)
        .disable_signals()
        .shutdown_timeout(limits.drain_timeout.as_secs().max(1))
        .client_request_timeout(limits.head_timeout)
        .tls_handshake_timeout(limits.head_timeout)
        .on_connect(move |conn, ext| {
            connections.inc();
            tls::record_peer(conn, ext);
        });
    let server = match transport {
        Transport::Plain => server.listen(listener),
        Transport::MutualTls(material) => {
            server.listen_rustls_0_23(listener, tls::server_config(material))
        }
        Transport::PublicTls(config) => server.listen_rustls_0_23(listener, (**config).clone()),
    };
    Ok(server
        .with_context(|| format!("cannot serve on {bound}"))?
        .run())
}
