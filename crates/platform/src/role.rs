//! The contract between the platform and a role.
//!
//! A role is a manifest plus a `start` function. The platform opens the store, binds,
//! discovers and serves; `start` gets a [`RoleContext`] with all of that ready, spawns
//! whatever background work the role needs, and returns the routes to mount. The
//! platform never names a role: it only ever sees [`RoleEntry`] values.

use std::sync::Arc;

use actix_web::web;

use super::client::ServiceClient;
use super::config::Config;
use super::manifest::{Manifest, RoleCatalog};
use super::metrics::Metrics;
use super::peer_view::PeerView;
use super::shutdown::Shutdown;
use super::store::Store;

/// Mounts a role's routes on an actix app; called once per worker thread.
pub type Routes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// One role this binary can run.
pub struct RoleEntry {
    /// The role's manifest, embedded from `roles/<role>.yaml`.
    pub manifest_source: &'static str,
    pub start: fn(&RoleContext) -> anyhow::Result<Routes>,
}

/// Everything a starting role may use.
pub struct RoleContext {
    pub manifest: Manifest,
    pub catalog: Arc<RoleCatalog>,
    pub config: Config,
    pub instance_id: String,
    /// The base URL this instance is registered under.
    pub address: String,
    pub store: Arc<Store>,
    pub peers: PeerView,
    pub client: ServiceClient,
    pub metrics: Metrics,
    pub shutdown: Shutdown,
}
