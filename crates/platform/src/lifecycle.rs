//! The life of one instance: open store → bind → start role → serve → register → ready,
//! and on SIGTERM or SIGINT: not ready → deregister → stop accepting → drain → exit 0.
//!
//! Registering only after the server accepts connections means no peer is ever sent to
//! an address that refuses; deregistering before draining means peers stop sending new
//! work while in-flight requests finish. When the instance is ready it prints one JSON
//! line to stdout (`{"event":"ready",...}`), which `svc dev` and the tests wait for, and
//! tells systemd `READY=1`; a stop signal first tells systemd `STOPPING=1`. When systemd
//! asks for a watchdog, this runtime pings it (see [`super::systemd`]).

use std::net::{SocketAddr, TcpListener};
use std::path::PathBuf;
use std::sync::Arc;

use std::time::Duration;

use actix_web::{middleware::from_fn, web, App};
use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use super::access::{self, AccessPolicy};
use super::client::ServiceClient;
use super::config::{PlatformConfig, PositiveDuration};
use super::lease_keeper::LeaseKeeper;
use super::listener::{self, Limits, Transport};
use super::manifest::{Manifest, RoleCatalog};
use super::metrics::Metrics;
use super::peer_view::PeerView;
use super::registry_api::Registration;
use super::registry_client::RegistryClient;
use super::role::{RoleContext, RoleStart};
use super::server::{self, PlatformState, Readiness};
use super::shutdown::Shutdown;
use super::store::Store;
use super::systemd::{self, Notifier};
use super::tls::setup;

/// The instance id used when none is configured: the host name, which is stable across
/// restarts on a VM running one instance per role.
pub fn default_instance_id() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| {
            h.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "0".to_string())
}

/// Where an instance keeps its state.
pub fn store_path(config: &PlatformConfig, role: &str, instance_id: &str) -> PathBuf {
    config.data_dir.join(format!("{role}-{instance_id}.redb"))
}

/// Runs one instance until a stop signal; returns once it has drained.
/// `public_head_timeout` is how long a client of the public listener (a role whose
/// manifest is `public`) may take to send a request head.
pub async fn run(
    start: RoleStart<'_>,
    manifest: Manifest,
    catalog: Arc<RoleCatalog>,
    config: PlatformConfig,
    instance_id: String,
    public_head_timeout: PositiveDuration,
) -> anyhow::Result<()> {
    let role = manifest.name.clone();
    let notifier = Notifier::from_env();
    let watchdog = systemd::watchdog_ping_interval(
        std::env::var("WATCHDOG_USEC").ok().as_deref(),
        std::env::var("WATCHDOG_PID").ok().as_deref(),
        std::process::id(),
    );
    if let Some(interval) = watchdog {
        // On this runtime on purpose: if the lifecycle's loop stalls, the pings stop.
        notifier.spawn_watchdog(interval);
    }
    let path = store_path(&config, &role, &instance_id);
    let store = Arc::new(Store::open(&path)?);
    let tls = setup::load_material(&config.tls, &role)?;

    // A role with a public API binds that at `listen`; its internal listener elsewhere.
    let default_listen = SocketAddr::new(config.bind_host, manifest.port);
    let (internal_at, public_at) = if manifest.public {
        let internal = config
            .internal_listen
            .unwrap_or_else(|| SocketAddr::new(config.bind_host, 0));
        (internal, Some(config.listen.unwrap_or(default_listen)))
    } else {
        (config.listen.unwrap_or(default_listen), None)
    };
    let internal_transport = match &tls {
        Some(material) => Transport::MutualTls(material.clone()),
        None => Transport::Plain,
    };
    let (listener, bound) = bind(internal_at)?;
    let address = advertised_address(
        internal_transport.scheme(),
        bound,
        config.advertise_host.as_deref(),
    );
    let mut reloading: Vec<Arc<dyn setup::Reloadable>> = Vec::new();
    if let Some(material) = &tls {
        reloading.push(material.clone());
    }
    let public = match public_at {
        Some(at) => {
            let (transport, public_cert) = setup::public_transport(&config.tls)?;
            if let Some(cert) = public_cert {
                reloading.push(cert);
            }
            let (listener, bound) = bind(at)?;
            let url =
                advertised_address(transport.scheme(), bound, config.advertise_host.as_deref());
            Some((listener, transport, url))
        }
        None => None,
    };
    let public_address = public.as_ref().map(|(_, _, url)| url.clone());

    let shutdown = Shutdown::new();
    setup::spawn_reloader(reloading, config.tls.reload_interval, shutdown.clone());
    let registry_client = RegistryClient::new(
        config.registries.clone(),
        config.discovery.registry_timeout.get(),
        tls.as_ref(),
    )?;
    let peers = PeerView::restore(store.clone());
    let metrics = Metrics::new(&role, &instance_id);
    let client = ServiceClient::new(peers.clone(), &config, metrics.registry(), tls.as_ref())?;
    let ctx = RoleContext {
        manifest: manifest.clone(),
        catalog,
        config: config.clone(),
        instance_id: instance_id.clone(),
        address: address.clone(),
        store: store.clone(),
        peers: peers.clone(),
        client,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    };
    let routes = start(&ctx).with_context(|| format!("role {role} failed to start"))?;

    let connections_internal = metrics.connections("internal");
    let connections_public = metrics.connections("public");
    let readiness = Readiness::default();
    let platform = PlatformState {
        role: role.clone(),
        instance_id: instance_id.clone(),
        metrics,
        readiness: readiness.clone(),
        peers: peers.clone(),
        max_body_bytes: config.http.max_body_bytes,
    };
    let limits = Limits {
        workers: config.workers,
        drain_timeout: config.shutdown.drain_timeout,
        head_timeout: HEAD_TIMEOUT,
    };
    let policy = web::Data::new(AccessPolicy::new(&manifest, tls.is_some()));
    let internal_routes = (!manifest.public).then(|| routes.clone());
    let internal_platform = platform.clone();
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
        listener,
        &internal_transport,
        limits,
        connections_internal,
    )?;
    let mut handles = vec![server.handle()];
    let mut serving = vec![tokio::spawn(server)];
    if let Some((listener, transport, url)) = public {
        let server = listener::serve(
            move || {
                let routes = routes.clone();
                let platform = platform.clone();
                App::new()
                    .wrap(from_fn(server::observe))
                    .configure(|cfg| server::configure_extractors(cfg, &platform))
                    .configure(|cfg| routes(cfg))
                    .default_service(actix_web::web::to(server::not_found))
            },
            listener,
            &transport,
            // Clients on the internet get the configured time to send a request head.
            Limits {
                head_timeout: public_head_timeout.get(),
                ..limits
            },
            connections_public,
        )?;
        handles.push(server.handle());
        serving.push(tokio::spawn(server));
        tracing::info!(public = %url, "serving the public API");
    }
    tracing::info!(%address, store = %path.display(), "serving");

    let lease_keeper = if manifest.registers {
        peers.spawn_watch(
            registry_client.clone(),
            config.discovery.watch_wait,
            shutdown.clone(),
        );
        let keeper = LeaseKeeper::new(
            registry_client,
            Registration {
                role: role.clone(),
                instance_id: instance_id.clone(),
                address: address.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                metadata: registration_metadata(config.shard, public_address.as_deref()),
            },
        );
        let accepted = keeper.start().await;
        if accepted == 0 {
            tracing::warn!(
                "no registry accepted the registration yet; serving anyway and retrying in the background"
            );
        }
        Some(keeper)
    } else {
        None
    };

    readiness.set(true);
    let registered = lease_keeper.as_ref().map(LeaseKeeper::holding);
    announce_ready(
        &role,
        &instance_id,
        &address,
        public_address.as_deref(),
        &path,
        registered,
    );
    notifier.ready(&match registered {
        Some(n) => format!(
            "serving {role}/{instance_id} at {address}; registered at {n} of {} registries",
            config.registries.len()
        ),
        None => format!("serving {role}/{instance_id} at {address}"),
    });

    let signal_name = wait_for_stop_signal().await?;
    notifier.stopping(&format!("{signal_name}: deregistering, then draining"));
    tracing::info!(
        signal = signal_name,
        "stopping: deregistering, then draining"
    );
    readiness.set(false);
    if let Some(keeper) = &lease_keeper {
        keeper.deregister_all().await;
    }
    shutdown.trigger();
    futures::future::join_all(handles.iter().map(|h| h.stop(true))).await;
    futures::future::join_all(serving).await;
    tracing::info!("stopped");
    Ok(())
}

/// How long a client may take to send a request head (or finish a TLS handshake).
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

fn bind(at: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(at).with_context(|| format!("cannot listen on {at}"))?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

fn advertised_address(scheme: &str, bound: SocketAddr, advertise_host: Option<&str>) -> String {
    match advertise_host {
        Some(host) => format!("{scheme}://{host}:{}", bound.port()),
        // Bound to every interface: peers need a name that reaches us.
        None if bound.ip().is_unspecified() => {
            format!("{scheme}://{}:{}", default_instance_id(), bound.port())
        }
        None => format!("{scheme}://{bound}"),
    }
}

fn registration_metadata(
    shard: u32,
    public_address: Option<&str>,
) -> std::collections::BTreeMap<String, String> {
    let mut metadata = std::collections::BTreeMap::from([("shard".to_string(), shard.to_string())]);
    if let Some(url) = public_address {
        metadata.insert("public_address".to_string(), url.to_string());
    }
    metadata
}

fn announce_ready(
    role: &str,
    instance: &str,
    address: &str,
    public_address: Option<&str>,
    store: &std::path::Path,
    registered: Option<usize>,
) {
    let line = serde_json::json!({
        "event": "ready",
        "role": role,
        "instance": instance,
        "address": address,
        "public_address": public_address,
        "store": store.display().to_string(),
        "registered_at": registered,
        "pid": std::process::id(),
    });
    println!("{line}");
}

async fn wait_for_stop_signal() -> anyhow::Result<&'static str> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
