//! One bound listener and how it is served: mutual TLS (every internal listener), TLS
//! with a public certificate or plain HTTP (the gateway's public listener), or plain
//! HTTP everywhere when `tls.insecure` is set.
//!
//! Every listener gets the same connection limits: a client that does not finish its
//! request head (or TLS handshake) in time is disconnected, so slow-loris connections
//! cannot pile up.
//!
//! Stopping never drops a request on a connection the server has taken. Once the
//! instance drains (its [`Shutdown`] is triggered, after it deregistered and before the
//! server stops): every response says `Connection: close`, so each connection ends
//! after the answer it is carrying; a kept-alive connection idle between requests is
//! closed at once, unless its next request has already arrived, which is then served
//! ([`DrainingStream`]); a connection that has not sent its first request yet is kept
//! for [`FIRST_REQUEST_GRACE`] after it opened, and a request it sends is answered. On
//! stop the listener closes (a new connection is refused), open connections are served
//! to their end, and whatever is left after `drain_timeout` is cut. A connection the
//! server accepted but never took (still queued when the listener closed) is reset,
//! never closed in order ([`abort_when_closed`]): its client can tell that its request
//! was never read.
//!
//! This is why the server is assembled here from actix-server and actix-http instead
//! of `actix_web::HttpServer`: on a graceful stop, `HttpServer` tells every connection
//! to drain, and a connection that has not started a request yet is then closed without
//! reading the one its client has already sent; the client sees the connection end
//! with no answer and cannot know whether to repeat it.

use std::fmt;
use std::future::Future;
use std::io;
use std::net::TcpListener;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use actix_http::{
    body::MessageBody, ConnectionType, Extensions, HttpService, KeepAlive, Protocol, Request,
    Response,
};
use actix_server::Server;
use actix_service::{
    fn_service, map_config, IntoServiceFactory, Service, ServiceFactory, ServiceFactoryExt,
};
use actix_tls::accept::rustls_0_23::{Acceptor, TlsStream};
use actix_web::dev::AppConfig;
use actix_web::rt::net::TcpStream;
use actix_web::Error;
use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

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
pub(crate) const KEEP_ALIVE: Duration = Duration::from_secs(5);
/// How long a closing connection waits for the client to take the last bytes.
const DISCONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// Serves `factory`'s app on `listener`; the returned server runs once awaited. From
/// the moment `draining` is triggered, connections end as the module docs say.
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
    abort_when_closed(&listener, true).context("SO_LINGER on the listener")?;
    let builder = Server::build()
        .workers(limits.workers)
        .disable_signals()
        .shutdown_timeout(limits.drain_timeout.as_secs().max(1));
    let name = format!("svc-{bound}");

    // The HTTP service of one worker, over the byte stream of either transport.
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
                .on_connect_ext(move |io: &DrainingStream<_>, ext: &mut Extensions| {
                    connections.inc();
                    tls::record_peer(io.get_ref() as &dyn std::any::Any, ext);
                })
                // The app reads nothing of this config (no URL generation, no
                // connection info), so the defaults stand in for host and scheme.
                .finish(map_config(app, |_| AppConfig::default()))
                .map_err(drop)
        }};
    }

    let builder = match transport {
        Transport::Plain => {
            let draining = draining.clone();
            builder.listen(name, listener, move || {
                let draining = draining.clone();
                fn_service(move |io: TcpStream| {
                    taken(&io);
                    let peer = io.peer_addr().ok();
                    let io = DrainingStream::new(io, &draining);
                    async move { Ok((io, Protocol::Http1, peer)) }
                })
                .and_then(http_service!())
            })
        }
        Transport::MutualTls(_) | Transport::PublicTls(_) => {
            let config = match transport {
                Transport::MutualTls(material) => tls::server_config(material),
                Transport::PublicTls(config) => (**config).clone(),
                Transport::Plain => unreachable!(),
            };
            let draining = draining.clone();
            builder.listen(name, listener, move || {
                over_tls(config.clone(), limits.head_timeout, &draining).and_then(http_service!())
            })
        }
    };
    Ok(builder
        .with_context(|| format!("cannot serve on {bound}"))?
        .run())
}

/// The TLS handshake (within `handshake_timeout`), then the HTTP/1.1 byte stream.
fn over_tls(
    mut config: rustls::ServerConfig,
    handshake_timeout: Duration,
    draining: &Shutdown,
) -> impl ServiceFactory<
    TcpStream,
    Config = (),
    Response = (
        DrainingStream<TlsStream<TcpStream>>,
        Protocol,
        Option<std::net::SocketAddr>,
    ),
    Error = (),
    InitError = (),
> {
    let mut protocols = vec![b"http/1.1".to_vec()];
    protocols.extend_from_slice(&config.alpn_protocols);
    config.alpn_protocols = protocols;
    let mut acceptor = Acceptor::new(config);
    acceptor.set_handshake_timeout(handshake_timeout);
    let draining = draining.clone();
    fn_service(|io: TcpStream| {
        taken(&io);
        async move { Ok::<_, ()>(io) }
    })
    .and_then(acceptor.map_err(drop))
    .map_init_err(|_| unreachable!("the TLS acceptor does not fail to start"))
    .and_then(fn_service(move |io: TlsStream<TcpStream>| {
        let peer = io.get_ref().0.peer_addr().ok();
        let io = DrainingStream::new(io, &draining);
        async move { Ok((io, Protocol::Http1, peer)) }
    }))
}

/// The byte stream of one connection, which ends (reads as closed) once the instance
/// drains and the connection is quiet: nothing has come in since it last answered, or,
/// if it has not answered anything yet, since it opened [`FIRST_REQUEST_GRACE`] ago.
/// The HTTP dispatcher then closes the connection cleanly. Bytes already waiting in the
/// socket are read first, and a request under way is never cut.
pub struct DrainingStream<T> {
    inner: T,
    drain: Pin<Box<dyn Future<Output = ()>>>,
    draining: bool,
    /// When a connection that has answered nothing counts as quiet.
    first_request_by: Pin<Box<tokio::time::Sleep>>,
    answered: bool,
    /// Bytes came in since the last bytes went out: a request is under way.
    receiving: bool,
}

/// How long a new connection may take to bring its first request once the instance
/// drains, before it counts as an idle pooled connection and is closed. A client that
/// connected in order to send a request sends it at once; some clients' pools also
/// open connections they keep unused, which would otherwise hold the drain for the
/// whole head timeout.
pub const FIRST_REQUEST_GRACE: Duration = Duration::from_secs(1);

impl<T> DrainingStream<T> {
    fn new(inner: T, shutdown: &Shutdown) -> Self {
        let shutdown = shutdown.clone();
        DrainingStream {
            inner,
            drain: Box::pin(async move { shutdown.wait().await }),
            draining: false,
            first_request_by: Box::pin(tokio::time::sleep(FIRST_REQUEST_GRACE)),
            answered: false,
            receiving: false,
        }
    }

    pub fn get_ref(&self) -> &T {
        &self.inner
    }

    /// Whether the connection should end now; registers `cx` to be woken when that may
    /// change (draining starts, the first-request grace passes).
    fn quiet_while_draining(&mut self, cx: &mut Context<'_>) -> bool {
        if !self.draining {
            self.draining = self.drain.as_mut().poll(cx).is_ready();
        }
        self.draining
            && !self.receiving
            && (self.answered || self.first_request_by.as_mut().poll(cx).is_ready())
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for DrainingStream<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                if buf.filled().len() > before {
                    this.receiving = true;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            // Nothing waiting: end here if quiet (an empty read is the end of stream).
            Poll::Pending if this.quiet_while_draining(cx) => Poll::Ready(Ok(())),
            Poll::Pending => Poll::Pending,
        }
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for DrainingStream<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write(cx, buf);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.answered = true;
            this.receiving = false;
        }
        written
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        if matches!(written, Poll::Ready(Ok(n)) if n > 0) {
            this.answered = true;
            this.receiving = false;
        }
        written
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_flush(cx)
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.get_mut().inner).poll_shutdown(cx)
    }
}

/// `res`, told to close its connection once the instance drains.
fn close_when_draining<B>(draining: &Shutdown, mut res: Response<B>) -> Response<B> {
    if draining.is_triggered() {
        res.head_mut().set_connection_type(ConnectionType::Close);
    }
    res
}

/// Sets whether closing a socket resets its connection (`SO_LINGER` 0) instead of
/// ending it with a FIN. Set on the listener, so that every connection accepted from it
/// starts so (Linux copies the option to accepted sockets), and cleared on each one the
/// HTTP service takes ([`taken`]): a connection the server accepted but never read, as
/// when it stops with connections still queued for a worker, is reset. Its client then
/// sees a reset, which it can tell from a request read and left unanswered, and never
/// an orderly close after it sent a request.
fn abort_when_closed(socket: &impl std::os::fd::AsFd, abort: bool) -> io::Result<()> {
    use nix::sys::socket::{setsockopt, sockopt::Linger};
    let linger = nix::libc::linger {
        l_onoff: i32::from(abort),
        l_linger: 0,
    };
    setsockopt(socket, Linger, &linger).map_err(io::Error::from)
}

/// A connection the HTTP service took: from now on it closes in order, and its writes
/// go out at once (`TCP_NODELAY`, as `actix_web::HttpServer` and the internal clients
/// do): an answer written in more than one piece (TLS records, a streamed body) is not
/// held back waiting for the client's acknowledgement of the previous piece.
fn taken(io: &TcpStream) {
    if let Err(e) = abort_when_closed(io, false) {
        tracing::warn!(error = %e, "cannot clear SO_LINGER on a connection");
    }
    if let Err(e) = io.set_nodelay(true) {
        tracing::warn!(error = %e, "cannot set TCP_NODELAY on a connection");
    }
}
