//! One bound listener and how it is served: mutual TLS (every internal listener), TLS
//! with a public certificate or plain HTTP (the gateway's public listener), or plain
//! HTTP everywhere when `tls.insecure` is set.
//!
//! Every listener gets the same connection limits: a client that does not finish its
//! request head (or TLS handshake) in time is disconnected, so slow-loris connections
//! cannot pile up.
//!
//! Stopping never drops a request the server has accepted a connection for. Once the
//! instance drains (its [`Shutdown`] is triggered, before the server is stopped), every
//! response says `Connection: close`, so each connection ends after the answer it is
//! carrying. On stop the listener closes (a new connection is refused), and every open
//! connection is served to its end: a request that arrives on it, also the first one of
//! a connection just accepted, is answered; an idle kept-alive connection is closed by
//! its keep-alive timer, as at any other time; after `drain_timeout` whatever is left
//! is cut. This is why the server is assembled here from actix-server and actix-http
//! instead of `actix_web::HttpServer`: on a graceful stop, `HttpServer` tells every
//! connection to drain, and a connection that has not started a request yet is then
//! closed without reading the one its client has already sent (the client sees the
//! connection close with no answer, and cannot know whether to repeat it).

use std::fmt;
use std::net::TcpListener;
use std::sync::Arc;
use std::time::Duration;

use actix_http::{
    body::MessageBody, ConnectionType, Extensions, HttpService, KeepAlive, Request, Response,
    TlsAcceptorConfig,
};
use actix_server::Server;
use actix_service::{map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt};
use actix_web::dev::AppConfig;
use actix_web::Error;
use anyhow::Context as _;

use super::shutdown::Shutdown;
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

/// How long an idle kept-alive connection stays open (actix-web's default).
const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long a closing connection waits for the client to take the last bytes.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves `factory`'s app on `listener`; the returned server runs once awaited. From
/// the moment `draining` is triggered, every response closes its connection.
pub fn serve<F, I, S, B>(
    factory: F,
    listener: TcpListener,
    transport: &Transport,
    limits: Limits,
    connections: prometheus::IntCounter,
    draining: Shutdown,
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
    let builder = Server::build()
        .workers(limits.workers)
        .disable_signals()
        .shutdown_timeout(limits.drain_timeout.as_secs().max(1));
    let name = format!("svc-{bound}");

    // The same HTTP service over either byte stream (plain TCP or TLS).
    macro_rules! http_service {
        () => {{
            let draining = draining.clone();
            let connections = connections.clone();
            let app = factory()
                .into_factory()
                .map(move |res| close_when_draining(&draining, res.into()))
                .map_err(|err| err.into().error_response());
            HttpService::build()
                .keep_alive(KeepAlive::Timeout(KEEP_ALIVE))
                .client_request_timeout(limits.head_timeout)
                .client_disconnect_timeout(DISCONNECT_TIMEOUT)
                .h1_allow_half_closed(true)
                .on_connect_ext(move |io: &_, ext: &mut Extensions| {
                    connections.inc();
                    tls::record_peer(io as &dyn std::any::Any, ext);
                })
                // The app reads nothing of this config (no URL generation, no
                // connection info), so the defaults stand in for host and scheme.
                .finish(map_config(app, |_| AppConfig::default()))
        }};
    }

    let handshake = move || TlsAcceptorConfig::default().handshake_timeout(limits.head_timeout);
    let builder = match transport {
        Transport::Plain => builder.listen(name, listener, move || http_service!().tcp()),
        Transport::MutualTls(material) => {
            let config = tls::server_config(material);
            builder.listen(name, listener, move || {
                http_service!().rustls_0_23_with_config(config.clone(), handshake())
            })
        }
        Transport::PublicTls(config) => {
            let config = (**config).clone();
            builder.listen(name, listener, move || {
                http_service!().rustls_0_23_with_config(config.clone(), handshake())
            })
        }
    };
    Ok(builder
        .with_context(|| format!("cannot serve on {bound}"))?
        .run())
}

/// `res`, told to close its connection once the instance drains.
fn close_when_draining<B>(draining: &Shutdown, mut res: Response<B>) -> Response<B> {
    if draining.is_triggered() {
        res.head_mut().set_connection_type(ConnectionType::Close);
    }
    res
}
