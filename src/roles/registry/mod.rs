//! The registry role: where instances register with a lease and find each other.
//!
//! The [`LeaseTable`] is the truth in memory; every membership change is first written
//! to the registry's redb file (instance rows and the index, in one transaction) and only
//! then applied, so a restarted registry comes back with the same view and index. Each
//! change publishes the new index on a watch channel that blocking queries wait on.

mod http;
mod lease_table;
pub mod settings;
mod ui;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use redb::{TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use svc_platform::clock::now_ms;
use svc_platform::registry_api::Instance;
use svc_platform::role::{RoleContext, Routes};
use svc_platform::shutdown::Shutdown;
use svc_platform::store::{self, Command, JsonTable, Store, StoreError};

pub use lease_table::LeaseTable;

use super::RoleEntry;
use settings::RegistrySettings;

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../../roles/registry.yaml"),
    start: |ctx, config| start(ctx, &config.registry),
};

const INSTANCES: JsonTable = TableDefinition::new("registry_instances");
const META: JsonTable = TableDefinition::new("registry_meta");
const INDEX_KEY: &str = "index";

/// Shared by every worker: the table, its file, and the index watchers wait on.
pub struct RegistryState {
    table: Mutex<LeaseTable>,
    store: Arc<Store>,
    index: watch::Sender<u64>,
    settings: RegistrySettings,
    known_roles: Vec<String>,
    /// Stateful roles: one live instance per shard (from the manifests).
    sharded_roles: BTreeSet<String>,
    /// Ends blocking queries at shutdown so draining does not wait out their `wait`.
    shutdown: Shutdown,
}

/// What a mutation did, for persisting: rows to put and rows to delete.
#[derive(Default)]
struct Delta {
    put: Vec<Instance>,
    delete: Vec<Instance>,
}

impl RegistryState {
    fn open(
        store: Arc<Store>,
        settings: RegistrySettings,
        known_roles: Vec<String>,
        sharded_roles: BTreeSet<String>,
        shutdown: Shutdown,
    ) -> Result<Self, StoreError> {
        let instances: Vec<Instance> = store.scan_json(INSTANCES)?;
        let index: u64 = store.get_json(META, INDEX_KEY)?.unwrap_or(0);
        if !instances.is_empty() {
            tracing::info!(
                instances = instances.len(),
                index,
                grace = %humantime::format_duration(settings.lease_ttl),
                "restored registrations; every lease has one TTL of grace"
            );
        }
        let table = LeaseTable::restore(instances, index, settings.lease_ttl, Instant::now())
            .with_sharded_roles(sharded_roles.iter().cloned());
        Ok(RegistryState {
            table: Mutex::new(table),
            store,
            index: watch::channel(index).0,
            settings,
            known_roles,
            sharded_roles,
            shutdown,
        })
    }

    /// Applies `change` to a copy of the table, persists what it changed, then swaps the
    /// copy in. A failed write leaves memory and file as they were.
    fn mutate<T>(
        &self,
        change: impl FnOnce(&mut LeaseTable) -> (T, Delta),
    ) -> Result<T, StoreError> {
        let mut table = self.table.lock();
        let mut next = table.clone();
        let (out, delta) = change(&mut next);
        if next.index() != table.index() {
            self.persist(&delta, next.index())?;
            *table = next;
            self.index.send_replace(table.index());
        } else {
            // Renewals only touch lease times, which are not persisted.
            *table = next;
        }
        Ok(out)
    }

    fn persist(&self, delta: &Delta, index: u64) -> Result<(), StoreError> {
        self.store.submit_blocking(SaveMembership {
            put: delta.put.clone(),
            delete: delta.delete.clone(),
            index,
        })
    }

    fn evict_expired(&self) -> Result<Vec<Instance>, StoreError> {
        self.mutate(|t| {
            let evicted = t.evict_expired(Instant::now());
            let delta = Delta {
                delete: evicted.clone(),
                ..Delta::default()
            };
            (evicted, delta)
        })
    }
}

/// Writes one membership change: the rows it puts and deletes, and the new index.
#[derive(Serialize, Deserialize)]
struct SaveMembership {
    put: Vec<Instance>,
    delete: Vec<Instance>,
    index: u64,
}

impl Command for SaveMembership {
    type Output = ();
    type Error = StoreError;

    fn apply(&self, tx: &WriteTransaction) -> Result<(), StoreError> {
        let mut rows = tx.open_table(INSTANCES)?;
        for i in &self.put {
            rows.insert(
                key(&i.role, &i.instance_id).as_str(),
                store::encode(i).as_slice(),
            )?;
        }
        for i in &self.delete {
            rows.remove(key(&i.role, &i.instance_id).as_str())?;
        }
        let mut meta = tx.open_table(META)?;
        meta.insert(INDEX_KEY, store::encode(&self.index).as_slice())?;
        Ok(())
    }
}

fn key(role: &str, id: &str) -> String {
    format!("{role}/{id}")
}

fn start(ctx: &RoleContext, settings: &RegistrySettings) -> anyhow::Result<Routes> {
    let known_roles = ctx.catalog.names().into_iter().map(String::from).collect();
    // Roles whose instances register and keep state own one shard each.
    let sharded_roles = ctx
        .catalog
        .iter()
        .filter(|m| m.is_sharded())
        .map(|m| m.name.clone())
        .collect();
    let state = Arc::new(RegistryState::open(
        ctx.store.clone(),
        settings.clone(),
        known_roles,
        sharded_roles,
        ctx.shutdown.clone(),
    )?);
    spawn_evictor(state.clone(), ctx.shutdown.clone());
    Ok(Arc::new(move |cfg| http::routes(cfg, state.clone())))
}

/// Checks leases often enough that an eviction is late by at most a small slice of TTL.
fn spawn_evictor(state: Arc<RegistryState>, shutdown: Shutdown) {
    let period = (state.settings.lease_ttl / 10)
        .clamp(Duration::from_millis(20), Duration::from_millis(250));
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            let state = state.clone();
            match tokio::task::spawn_blocking(move || state.evict_expired()).await {
                Ok(Ok(evicted)) => {
                    for i in evicted {
                        let silent_ms = now_ms().saturating_sub(i.renewed_at_ms);
                        tracing::warn!(role = %i.role, instance = %i.instance_id, silent_ms, "lease expired; instance evicted");
                    }
                }
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "could not persist evictions; will retry")
                }
                Err(e) => tracing::error!(error = %e, "eviction task failed"),
            }
        }
    });
}
