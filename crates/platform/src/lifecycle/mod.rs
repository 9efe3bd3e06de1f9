//! The life of one instance, in the steps docs/ARCHITECTURE.md numbers under "How an
//! instance joins and leaves": prepare (store, TLS) → bind → start the role → serve →
//! register → ready, and on SIGTERM or SIGINT: drain (not ready → deregister → stop
//! accepting → finish in-flight requests) → exit 0. [`run`] is that list; each step is
//! a function here or in [`listeners`] and [`announce`].
//!
//! Registering only after the server accepts connections means no peer is ever sent to
//! an address that refuses; deregistering before draining means peers stop sending new
//! work while in-flight requests finish. A stop signal first tells systemd
//! `STOPPING=1`. When systemd asks for a watchdog, this runtime pings it (see
//! [`super::systemd`]).

mod announce;
mod follow_health;
mod listeners;
mod serving;

use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context as _;
use tokio::signal::unix::{signal, SignalKind};

use super::client::ServiceClient;
use super::config::{PlatformConfig, PositiveDuration};
use super::health_gate::HealthGate;
use super::lease_keeper::LeaseKeeper;
use super::manifest::{Manifest, RoleCatalog};
use super::metrics::Metrics;
use super::peer_view::PeerView;
use super::registry_client::RegistryClient;
use super::reload::{self, ReloadHub};
use super::role::{RoleContext, RoleStart, Routes};
use super::server::Readiness;
use super::shutdown::Shutdown;
use super::store::Store;
use super::systemd::{self, Notifier};
use super::tls::{setup, TlsMaterial};
pub use announce::default_instance_id;
use announce::ReadyAnnouncement;
use listeners::ListenerPlan;
use serving::{serve, Serving};

/// Where an instance keeps its state.
fn store_path(config: &PlatformConfig, role: &str, instance_id: &str) -> PathBuf {
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
    let instance = Instance {
        role: manifest.name.clone(),
        manifest,
        catalog,
        config,
        id: instance_id,
    };
    let notifier = start_watchdog();
    // 1. Store and TLS; the reloader watches the certificates once all are known (2.).
    let prepared = prepare(&instance)?;
    // 2. Bind.
    let plan = ListenerPlan::for_instance(&instance.config, &instance.manifest);
    let bound = listeners::bind(plan, &instance.config, prepared.tls.as_ref())?;
    let shutdown = Shutdown::new();
    // SIGHUP reloads every watcher of the process, between RELOADING=1 and READY=1.
    let reloads = ReloadHub::default();
    reload::hangup::spawn(reloads.clone(), notifier.clone(), shutdown.clone());
    let reload_interval = instance.config.tls.reload_interval;
    setup::spawn_reloader(
        bound.reloading.clone(),
        reload_interval,
        &reloads,
        shutdown.clone(),
    );
    // 3. Start the role.
    let health = HealthGate::default();
    let started = start_role(start, &instance, &prepared, &reloads, &shutdown, &health)?;
    // 4. Serve, then register (and follow the role's health).
    let readiness = Readiness::gated(health.clone());
    let serving = serve(
        &instance,
        bound,
        &prepared,
        &started,
        &readiness,
        public_head_timeout,
        &shutdown,
    )?;
    tracing::info!(address = %serving.address, store = %prepared.store_path.display(), "serving");
    let healthy = health.is_healthy();
    let lease_keeper = register(&instance, &started, &serving, &shutdown, healthy).await;
    let follower = lease_keeper
        .clone()
        .map(|keeper| follow_health::spawn(&health, healthy, keeper));
    // 5. Ready.
    ready(
        &instance,
        &notifier,
        &readiness,
        &serving,
        &prepared,
        lease_keeper.as_deref(),
    );
    // 6. Stop signal: drain.
    let signal_name = wait_for_stop_signal().await?;
    if let Some(follower) = follower {
        follower.abort(); // from here on, nothing registers again
    }
    drain(
        signal_name,
        &notifier,
        &readiness,
        lease_keeper.as_deref(),
        &shutdown,
        serving,
    )
    .await;
    Ok(())
}

/// Who this instance is and how it is configured: what every step reads.
struct Instance {
    role: String,
    manifest: Manifest,
    catalog: Arc<RoleCatalog>,
    config: PlatformConfig,
    id: String,
}

/// Tells systemd this process is alive, when it asks for a watchdog; the notifier is
/// also how the later steps tell it `READY=1` and `STOPPING=1`.
fn start_watchdog() -> Notifier {
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
    notifier
}

/// Step 1's result: the open store and the TLS material (`None`: `tls.insecure`).
struct Prepared {
    store: Arc<Store>,
    store_path: PathBuf,
    tls: Option<Arc<TlsMaterial>>,
}

/// Step 1: open the store (typed error if locked, corrupt or unwritable), then load the
/// TLS material (errors name the file and the config key).
fn prepare(instance: &Instance) -> anyhow::Result<Prepared> {
    let store_path = store_path(&instance.config, &instance.role, &instance.id);
    let store = Arc::new(Store::open(&store_path)?);
    let tls = setup::load_material(&instance.config.tls, &instance.role)?;
    Ok(Prepared {
        store,
        store_path,
        tls,
    })
}

/// Step 3's result: the role's routes and what the later steps share with the role.
struct Started {
    routes: Routes,
    peers: PeerView,
    metrics: Metrics,
    registry_client: RegistryClient,
}

/// Step 3: make the role's context (peers, client, metrics) and let the role build its
/// routes and background tasks from it.
fn start_role(
    start: RoleStart<'_>,
    instance: &Instance,
    prepared: &Prepared,
    reloads: &ReloadHub,
    shutdown: &Shutdown,
    health: &HealthGate,
) -> anyhow::Result<Started> {
    let config = &instance.config;
    let tls = prepared.tls.as_ref();
    let registry_client = RegistryClient::new(
        config.registries.clone(),
        config.discovery.registry_timeout.get(),
        tls,
    )?;
    let peers = PeerView::restore(prepared.store.clone());
    let metrics = Metrics::new(&instance.role, &instance.id);
    for collector in prepared.store.collectors() {
        metrics
            .registry()
            .register(collector)
            .context("registering the store's metrics")?;
    }
    let client = ServiceClient::new(peers.clone(), config, metrics.registry(), tls)?;
    let ctx = RoleContext {
        manifest: instance.manifest.clone(),
        catalog: instance.catalog.clone(),
        config: config.clone(),
        instance_id: instance.id.clone(),
        store: prepared.store.clone(),
        client,
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
        reloads: reloads.clone(),
        health: health.clone(),
    };
    let routes = start(&ctx).with_context(|| format!("role {} failed to start", instance.role))?;
    Ok(Started {
        routes,
        peers,
        metrics,
        registry_client,
    })
}

/// Step 4, once serving: a role that registers starts watching the catalog and
/// registers its internal address at every registry (if `healthy`: see
/// [`follow_health`]).
async fn register(
    instance: &Instance,
    started: &Started,
    serving: &Serving,
    shutdown: &Shutdown,
    healthy: bool,
) -> Option<Arc<LeaseKeeper>> {
    if !instance.manifest.registers {
        return None;
    }
    let registration = announce::registration(
        &instance.role,
        &instance.id,
        &serving.address,
        instance.config.shard,
        serving.public_address.as_deref(),
    );
    let keeper = announce::register(
        started.registry_client.clone(),
        registration,
        &started.peers,
        instance.config.discovery.watch_wait,
        shutdown,
        healthy,
    )
    .await;
    Some(Arc::new(keeper))
}

/// Step 5: `/health/ready` turns 200, the ready line goes to stdout, systemd gets
/// `READY=1`.
fn ready(
    instance: &Instance,
    notifier: &Notifier,
    readiness: &Readiness,
    serving: &Serving,
    prepared: &Prepared,
    lease_keeper: Option<&LeaseKeeper>,
) {
    readiness.set(true);
    let announcement = ReadyAnnouncement {
        role: &instance.role,
        instance: &instance.id,
        address: &serving.address,
        public_address: serving.public_address.as_deref(),
        store: &prepared.store_path,
        registered: lease_keeper.map(LeaseKeeper::holding),
    };
    println!("{}", announcement.line(std::process::id()));
    notifier.ready(&announcement.status(instance.config.registries.len()));
}

/// Step 6: `STOPPING=1` → not ready → deregister everywhere (peers stop sending) →
/// trigger [`Shutdown`] → stop accepting and drain in-flight requests.
async fn drain(
    signal_name: &str,
    notifier: &Notifier,
    readiness: &Readiness,
    lease_keeper: Option<&LeaseKeeper>,
    shutdown: &Shutdown,
    serving: Serving,
) {
    notifier.stopping(&format!("{signal_name}: deregistering, then draining"));
    tracing::info!(
        signal = signal_name,
        "stopping: deregistering, then draining"
    );
    readiness.set(false);
    if let Some(keeper) = lease_keeper {
        keeper.deregister_all().await;
    }
    shutdown.trigger();
    futures::future::join_all(serving.handles.iter().map(|h| h.stop(true))).await;
    futures::future::join_all(serving.tasks).await;
    tracing::info!("stopped");
}

async fn wait_for_stop_signal() -> anyhow::Result<&'static str> {
    let mut term = signal(SignalKind::terminate()).context("cannot watch SIGTERM")?;
    let mut int = signal(SignalKind::interrupt()).context("cannot watch SIGINT")?;
    Ok(tokio::select! {
        _ = term.recv() => "SIGTERM",
        _ = int.recv() => "SIGINT",
    })
}
