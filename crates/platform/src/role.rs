//! The contract between the platform and a role.
//!
//! A role is a manifest plus a start function. The platform opens the store, binds,
//! discovers and serves; the start function gets a [`RoleContext`] with all of that
//! ready, spawns whatever background work the role needs, and returns the routes to
//! mount. The platform never names a role: the application hands
//! [`super::lifecycle::run`] a manifest and a [`RoleStart`], having closed over the
//! role's own settings, which the platform never sees.

use std::sync::Arc;

use actix_web::web;

use super::client::ServiceClient;
use super::config::PlatformConfig;
use super::health_gate::HealthGate;
use super::manifest::{Manifest, RoleCatalog};
use super::metrics::Metrics;
use super::reload::ReloadHub;
use super::shutdown::Shutdown;
use super::store::Store;

/// Mounts a role's routes on an actix app; called once per worker thread.
pub type Routes = Arc<dyn Fn(&mut web::ServiceConfig) + Send + Sync>;

/// Starts a role once the platform has made its [`RoleContext`]: called once.
pub type RoleStart<'a> = Box<dyn FnOnce(&RoleContext) -> anyhow::Result<Routes> + 'a>;

/// Everything a starting role may use, but its own settings (which come with its
/// [`RoleStart`]).
pub struct RoleContext {
    pub manifest: Manifest,
    pub catalog: Arc<RoleCatalog>,
    pub config: PlatformConfig,
    pub instance_id: String,
    pub store: Arc<Store>,
    pub client: ServiceClient,
    pub metrics: Metrics,
    pub shutdown: Shutdown,
    /// What a role's own file watchers join, so SIGHUP reloads them too
    /// ([`crate::reload::spawn`]).
    pub reloads: ReloadHub,
    /// Open by default; a role that depends on something outside its process (a
    /// sidecar's application) closes it while that is unhealthy: the instance is then
    /// not ready and not registered ([`crate::health_gate`]).
    pub health: HealthGate,
}
