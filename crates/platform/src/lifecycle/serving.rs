//! Step 4 of an instance's life: serve. The internal listener gets the platform's
//! endpoints behind the access policy, and the role's routes unless the role has a
//! public API; a public listener gets the role's routes, with the configured time for
//! clients on the internet to send a request head, and never sees an internal header
//! ([`edge`]). Both run until [`super::drain`].

use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{middleware::from_fn, web, App};
use tokio::task::JoinHandle;

use super::listeners::Bound;
use super::{Instance, Prepared, Started};
use crate::access::{self, AccessPolicy};
use crate::config::PositiveDuration;
use crate::edge;
use crate::listener::{self, Limits};
use crate::server::{self, PlatformState, Readiness};
use crate::shutdown::Shutdown;

/// The running servers and the addresses they are reached at.
pub(super) struct Serving {
    pub(super) address: String,
    pub(super) public_address: Option<String>,
    pub(super) handles: Vec<ServerHandle>,
    pub(super) tasks: Vec<JoinHandle<std::io::Result<()>>>,
}

/// Starts the servers of `bound`; `public_head_timeout` is for the public listener.
/// Once `shutdown` is triggered, their connections drain (see [`listener`]).
pub(super) fn serve(
    instance: &Instance,
    bound: Bound,
    prepared: &Prepared,
    started: &Started,
    readiness: &Readiness,
    public_head_timeout: PositiveDuration,
    shutdown: &Shutdown,
) -> anyhow::Result<Serving> {
    let config = &instance.config;
    let manifest = &instance.manifest;
    let (routes, metrics) = (started.routes.clone(), &started.metrics);
    let connections_internal = metrics.connections("internal");
    let connections_public = metrics.connections("public");
    let platform = PlatformState {
        role: instance.role.clone(),
        instance_id: instance.id.clone(),
        metrics: metrics.clone(),
        readiness: readiness.clone(),
        peers: started.peers.clone(),
        max_body_bytes: config.http.max_body_bytes,
    };
    let limits = Limits {
        workers: config.workers,
        drain_timeout: config.shutdown.drain_timeout,
        head_timeout: HEAD_TIMEOUT,
    };
    let policy = web::Data::new(AccessPolicy::new(manifest, prepared.tls.is_some()));
    let internal_routes = (!manifest.public).then(|| routes.clone());
    let internal_platform = platform.clone();
    let address = bound.internal.address;
    let server = listener::serve(
        move || {
            let routes = internal_routes.clone();
            let platform = internal_platform.clone();
            App::new()
                .app_data(policy.clone())
                .wrap(from_fn(access::enforce))
                .wrap(from_fn(server::observe))
                .configure(|cfg| server::configure(cfg, &platform))
                .configure(|cfg| {
                    if let Some(routes) = routes {
                        routes(cfg)
                    }
                })
                .default_service(actix_web::web::to(server::not_found))
        },
        bound.internal.listener,
        &bound.internal.transport,
        limits,
        connections_internal,
        shutdown.clone(),
    )?;
    let mut handles = vec![server.handle()];
    let mut tasks = vec![tokio::spawn(server)];
    let mut public_address = None;
    if let Some(public) = bound.public {
        let server = listener::serve(
            move || {
                let routes = routes.clone();
                let platform = platform.clone();
                // Internal headers go first, before anything reads the request.
                App::new()
                    .wrap(from_fn(server::observe))
                    .wrap(from_fn(edge::strip_internal_headers))
                    .configure(|cfg| server::configure_extractors(cfg, &platform))
                    .configure(|cfg| routes(cfg))
                    .default_service(actix_web::web::to(server::not_found))
            },
            public.listener,
            &public.transport,
            // Clients on the internet get the configured time to send a request head.
            Limits {
                head_timeout: public_head_timeout.get(),
                ..limits
            },
            connections_public,
            shutdown.clone(),
        )?;
        handles.push(server.handle());
        tasks.push(tokio::spawn(server));
        tracing::info!(public = %public.address, "serving the public API");
        public_address = Some(public.address);
    }
    Ok(Serving {
        address,
        public_address,
        handles,
        tasks,
    })
}

/// How long a client may take to send a request head (or finish a TLS handshake).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
