//! `svc ui`: the registry's `/ui` page for a person with a browser, served on this
//! machine by a small proxy (like `kubectl proxy`).
//!
//! The registry only talks mutual TLS, and a browser has no client certificate. This
//! command loads one (the operator's, by default), listens on plain HTTP, and forwards
//! exactly two requests to the first registry that answers: `GET /ui` and
//! `GET /v1/catalog` (query kept, so the page's blocking queries work).
//!
//! Guarantees:
//! * Read-only: any other method or path is a 404 problem and never reaches a registry.
//! * Loopback by default (`127.0.0.1:7780`); another address is served, with a warning,
//!   since whoever reaches it reads the catalog.
//! * The certificate never leaves the process: the proxy makes its own requests, with
//!   nothing of the browser's (no cookies, no authorization, no other header), and
//!   relays back only the status, the body and the few headers the page needs.

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::process::ExitCode;
use std::time::Duration;

use actix_web::http::{Method, StatusCode};
use actix_web::{web, App, HttpRequest, HttpResponse, HttpServer, ResponseError};
use tokio::signal::unix::{signal, SignalKind};

use super::{fail, EXIT_FAILURE, EXIT_USAGE};
use crate::cli::UiArgs;
use svc_platform::problem::Problem;
use svc_platform::registry_api::INDEX_HEADER;
use svc_platform::tls::http_client_builder;

/// The registry's clock on catalog reads (`roles/registry/http.rs`); the page uses it.
const TIME_HEADER: &str = "x-svc-time-ms";
/// Headers of the registry's answer the browser gets; every other one stays here.
const RELAYED: &[&str] = &[
    "content-type",
    "cache-control",
    "content-security-policy",
    "x-content-type-options",
    INDEX_HEADER,
    TIME_HEADER,
];
/// A registry that does not accept the connection within this is tried no longer.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);
/// The whole exchange for the page and for a catalog read that does not block.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// A blocking query's `wait` when it names none (the registry's default).
const DEFAULT_WAIT: Duration = Duration::from_secs(30);
/// The longest `wait` honoured when choosing the timeout (registries cap it lower).
const MAX_WAIT: Duration = Duration::from_secs(600);

/// What every request handler shares: one client holding the certificate.
struct Proxy {
    http: reqwest::Client,
    registries: Vec<String>,
}

pub fn run(args: UiArgs) -> ExitCode {
    let proxy = match Proxy::new(&args) {
        Ok(proxy) => web::Data::new(proxy),
        Err(message) => return fail(EXIT_USAGE, message),
    };
    let at = args.listen;
    let listener = match TcpListener::bind(at) {
        Ok(listener) => listener,
        Err(e) => return fail(EXIT_FAILURE, format!("cannot listen on {at}: {e}")),
    };
    let via = match args.identity.insecure {
        true => "plain HTTP".to_string(),
        false => format!("the `{}` certificate", args.identity.identity),
    };
    match actix_web::rt::System::new().block_on(serve(listener, proxy, &via)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(EXIT_FAILURE, e),
    }
}

/// Serves until SIGINT or SIGTERM, then stops (waiting at most a second for requests).
async fn serve(listener: TcpListener, proxy: web::Data<Proxy>, via: &str) -> io::Result<()> {
    let bound: SocketAddr = listener.local_addr()?;
    if !bound.ip().is_loopback() {
        eprintln!(
            "svc: warning: listening on {bound}, not a loopback address: anyone who can reach it \
             sees the catalog"
        );
    }
    let registries = proxy.registries.join(", ");
    let app_proxy = proxy.clone();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(app_proxy.clone())
            .default_service(web::to(handle))
    })
    // One worker: every request is a wait on the network, and one client, one pool.
    .workers(1)
    .disable_signals()
    .shutdown_timeout(1)
    .listen(listener)?
    .run();
    let stopper = server.handle();
    let serving = actix_web::rt::spawn(server);
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;

    let address = format!("http://{bound}");
    let ready = serde_json::json!({
        "event": "ready",
        "role": "ui",
        "instance": "ui",
        "address": address,
        "pid": std::process::id(),
    });
    println!("{ready}");
    eprintln!(
        "svc ui: open {address}/ui in a browser (the catalog of {registries}, read with \
         {via}); Ctrl-C stops"
    );
    tokio::select! {
        _ = term.recv() => {}
        _ = int.recv() => {}
    }
    stopper.stop(true).await;
    serving.await.map_err(io::Error::other)?
}

async fn handle(req: HttpRequest, proxy: web::Data<Proxy>) -> HttpResponse {
    let path = req.path();
    if req.method() != Method::GET || !matches!(path, "/ui" | "/v1/catalog") {
        return Problem::not_found(format!(
            "svc ui is read-only and serves GET /ui and GET /v1/catalog only, not {} {path}",
            req.method()
        ))
        .error_response();
    }
    let query = req.query_string();
    let target = match query {
        "" => path.to_string(),
        q => format!("{path}?{q}"),
    };
    proxy.forward(&target, request_timeout(query)).await
}

impl Proxy {
    /// Checks the URLs and loads the certificate; the message names the flag to fix.
    fn new(args: &UiArgs) -> Result<Proxy, String> {
        let mut registries = Vec::new();
        for url in &args.registries {
            match reqwest::Url::parse(url) {
                Ok(u) if matches!(u.scheme(), "http" | "https") => {
                    registries.push(url.trim_end_matches('/').to_string())
                }
                _ => return Err(format!("--registry: `{url}` is not an http(s) URL")),
            }
        }
        let tls = super::load_identity(&args.identity)?;
        let http = http_client_builder(tls.as_ref(), None)
            .connect_timeout(CONNECT_TIMEOUT)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| format!("cannot build an HTTP client: {e}"))?;
        Ok(Proxy { http, registries })
    }

    /// `GET target` at each registry in order, until one can be connected to.
    async fn forward(&self, target: &str, timeout: Duration) -> HttpResponse {
        let mut unreachable = Vec::new();
        for base in &self.registries {
            let sent = self.http.get(format!("{base}{target}")).timeout(timeout);
            let answer = match sent.send().await {
                Err(e) if e.is_connect() => {
                    unreachable.push(format!("{base}: {}", causes(&e)));
                    continue;
                }
                Ok(res) => relay(res).await,
                Err(e) => Err(e),
            };
            return answer.unwrap_or_else(|e| {
                let status = if e.is_timeout() {
                    StatusCode::GATEWAY_TIMEOUT
                } else {
                    StatusCode::BAD_GATEWAY
                };
                Problem::new(status, format!("registry {base}: {}", causes(&e))).error_response()
            });
        }
        Problem::new(
            StatusCode::BAD_GATEWAY,
            format!("no registry could be reached: {}", unreachable.join("; ")),
        )
        .error_response()
    }
}

/// The registry's answer as the browser gets it: status, [`RELAYED`] headers, body.
async fn relay(res: reqwest::Response) -> Result<HttpResponse, reqwest::Error> {
    let status = StatusCode::from_u16(res.status().as_u16()).unwrap_or(StatusCode::BAD_GATEWAY);
    let mut out = HttpResponse::build(status);
    for name in RELAYED {
        if let Some(value) = res.headers().get(*name) {
            out.insert_header((*name, value.as_bytes()));
        }
    }
    let body = res.bytes().await?;
    Ok(out.body(body))
}

/// Long enough for a blocking query (`?index=N&wait=D`) to run its course.
fn request_timeout(query: &str) -> Duration {
    let mut params = query.split('&');
    if !params.clone().any(|p| p.starts_with("index=")) {
        return REQUEST_TIMEOUT;
    }
    let wait = params
        .find_map(|p| p.strip_prefix("wait="))
        .and_then(|w| humantime::parse_duration(w).ok())
        .unwrap_or(DEFAULT_WAIT);
    wait.min(MAX_WAIT) + REQUEST_TIMEOUT
}

/// An error with its causes: reqwest's own message rarely says what failed.
fn causes(e: &reqwest::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_blocking_query_gets_longer_than_its_wait() {
        assert_eq!(request_timeout(""), REQUEST_TIMEOUT);
        assert_eq!(request_timeout("wait=5s"), REQUEST_TIMEOUT);
        assert_eq!(request_timeout("index=3&wait=5s"), Duration::from_secs(15));
        assert_eq!(request_timeout("index=3"), DEFAULT_WAIT + REQUEST_TIMEOUT);
        assert_eq!(
            request_timeout("wait=99999h&index=1"),
            MAX_WAIT + REQUEST_TIMEOUT
        );
    }
}
