//! The registry role: where instances register with a lease and find each other.
//!
//! The [`LeaseTable`] is the truth in memory. A membership change is made in place, in
//! O(log n), under the table's lock, and queued; one committer task takes every change
//! queued, writes them to the registry's redb file as one [`StoredDelta`] in one
//! transaction (so one fsync covers many registrations), and only then publishes the new
//! index and answers the changes. The lock is never held across a commit.
//!
//! Nothing is shown before it is on disk: a change is answered after its commit, and
//! every read waits until the index it saw is durable, so a restarted registry comes
//! back with the view and index anyone saw. If a batch cannot be written, it and every
//! change queued after it are undone in memory (last first, from their [`Change`]
//! records), the index moves past every index handed out (so no reader keeps one that
//! named an undone state), and each change is answered with an error: registrations
//! are soft state, and the instances register again (see `persist.rs`).

mod admission;
mod catalog_json;
mod eviction;
mod http;
mod lease_table;
mod persist;
mod prometheus_sd;
pub mod settings;
mod ui;

use std::collections::BTreeSet;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use parking_lot::Mutex;
use tokio::sync::{oneshot, watch, Notify};

use svc_platform::role::{RoleContext, Routes};
use svc_platform::shutdown::Shutdown;
use svc_platform::store::{Store, StoreError};

use eviction::EvictionGuard;
use lease_table::Change;
pub use lease_table::LeaseTable;
use persist::StoredDelta;

use super::RoleEntry;
use settings::RegistrySettings;

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../../roles/registry.yaml"),
    start: |ctx, config| start(ctx, &config.registry),
};

/// How long a serialized catalog is served again for the same index: long enough
/// that the watchers a change wakes together share one, short enough that the lease
/// times in it (renewals do not move the index) stay fresh.
const CATALOG_REUSE: Duration = Duration::from_millis(100);

/// A change that could not be persisted, and was undone.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "the registry could not write the change to its state file, so it was undone ({0}); try again"
)]
pub struct NotPersisted(String);

/// Shared by every worker: the table, the changes on their way to the file, and the
/// index watchers wait on.
pub struct RegistryState {
    inner: Mutex<Inner>,
    /// Wakes the committer when a change is queued.
    queued: Notify,
    store: Arc<Store>,
    /// The latest index whose view is on disk; what blocking queries and reads wait on.
    durable: watch::Sender<u64>,
    /// The catalog as JSON, for one index, while fresh ([`CATALOG_REUSE`]).
    catalog_cache: Mutex<Option<CachedCatalog>>,
    settings: RegistrySettings,
    known_roles: Vec<String>,
    /// Stateful roles: one live instance per shard (from the manifests).
    sharded_roles: BTreeSet<String>,
    /// Mutual TLS is on (not `tls.insecure`): registered addresses must be `https`.
    tls_on: bool,
    /// Ends blocking queries at shutdown so draining does not wait out their `wait`.
    shutdown: Shutdown,
}

/// What the table's lock guards.
struct Inner {
    table: LeaseTable,
    /// What the registry saw of its own clock: no eviction for time it did not see pass.
    guard: EvictionGuard,
    /// Changes made in memory and not yet handed to the committer, in index order.
    queued: Vec<QueuedChange>,
    /// How many times changes were undone; a read that began before one reads again.
    rollbacks: u64,
}

struct QueuedChange {
    change: Change,
    /// Told once the change is on disk (or undone).
    done: Option<oneshot::Sender<Result<(), NotPersisted>>>,
}

struct CachedCatalog {
    index: u64,
    made: Instant,
    json: Bytes,
}

/// What [`RegistryState::change`] did in memory, still to be confirmed by the disk.
pub struct Applied<T> {
    pub out: T,
    index: u64,
    rollbacks: u64,
    done: Option<oneshot::Receiver<Result<(), NotPersisted>>>,
}

impl RegistryState {
    fn open(
        store: Arc<Store>,
        settings: RegistrySettings,
        known_roles: Vec<String>,
        sharded_roles: BTreeSet<String>,
        tls_on: bool,
        shutdown: Shutdown,
    ) -> Result<Self, StoreError> {
        let (instances, index) = persist::restore(&store)?;
        let restored = !instances.is_empty();
        if restored {
            tracing::info!(
                instances = instances.len(),
                index,
                grace = %humantime::format_duration(settings.lease_ttl),
                "restored registrations; every lease has one TTL of grace"
            );
        }
        let now = Instant::now();
        let table = LeaseTable::restore(instances, index, settings.lease_ttl, now)
            .with_sharded_roles(sharded_roles.iter().cloned());
        Ok(RegistryState {
            inner: Mutex::new(Inner {
                table,
                guard: EvictionGuard::new(settings.lease_ttl, now, restored),
                queued: Vec::new(),
                rollbacks: 0,
            }),
            queued: Notify::new(),
            store,
            durable: watch::channel(index).0,
            catalog_cache: Mutex::new(None),
            settings,
            known_roles,
            sharded_roles,
            tls_on,
            shutdown,
        })
    }

    /// Runs `make` on the table under its lock (it must be quick: O(log n)); a
    /// [`Change`] it returns is queued for the committer. Await [`Applied::durable`]
    /// before telling anyone.
    pub fn change<T>(
        &self,
        make: impl FnOnce(&mut LeaseTable) -> (T, Option<Change>),
    ) -> Applied<T> {
        self.change_guarded(|table, _| make(table))
    }

    /// [`RegistryState::change`] with the [`EvictionGuard`] too (the evictor's checks).
    /// Every change first shows the guard the clock, so a change right after a stall
    /// (a shard claim) already sees the leases with their grace.
    fn change_guarded<T>(
        &self,
        make: impl FnOnce(&mut LeaseTable, &mut EvictionGuard) -> (T, Option<Change>),
    ) -> Applied<T> {
        let mut guard = self.inner.lock();
        let inner = &mut *guard;
        let stall = inner.guard.observe(&mut inner.table, Instant::now());
        let (out, change) = make(&mut inner.table, &mut inner.guard);
        let index = inner.table.index();
        let rollbacks = inner.rollbacks;
        let done = change.map(|change| {
            let (done, confirmed) = oneshot::channel();
            inner.queued.push(QueuedChange {
                change,
                done: Some(done),
            });
            confirmed
        });
        drop(guard);
        if done.is_some() {
            self.queued.notify_one();
        }
        if let Some(stall) = stall {
            eviction::log_stall(stall, self.settings.lease_ttl);
        }
        Applied {
            out,
            index,
            rollbacks,
            done,
        }
    }

    /// Reads the table under its lock, then waits until what was read is on disk; reads
    /// again if changes were undone meanwhile. Returns the index read at, and the value.
    pub async fn read<T>(&self, read: impl Fn(&LeaseTable) -> T) -> (u64, T) {
        loop {
            let (index, rollbacks, value) = {
                let inner = self.inner.lock();
                (inner.table.index(), inner.rollbacks, read(&inner.table))
            };
            if self.settled(index, rollbacks).await {
                return (index, value);
            }
        }
    }

    /// Waits until `index` is durable; `false` if changes were undone since `rollbacks`.
    async fn settled(&self, index: u64, rollbacks: u64) -> bool {
        let mut durable = self.durable.subscribe();
        // The sender lives in `self`, so this only ends when the index is reached.
        let _ = durable.wait_for(|d| *d >= index).await;
        self.inner.lock().rollbacks == rollbacks
    }

    /// The catalog as JSON and its index, serialized at most once per index while fresh.
    pub async fn catalog_json(&self) -> (u64, Bytes) {
        self.read(|table| {
            let mut cache = self.catalog_cache.lock();
            match &*cache {
                Some(c) if c.index == table.index() && c.made.elapsed() < CATALOG_REUSE => {
                    c.json.clone()
                }
                _ => {
                    let json = Bytes::from(
                        serde_json::to_vec(&catalog_json::CatalogJson(table))
                            .expect("the catalog serializes"),
                    );
                    *cache = Some(CachedCatalog {
                        index: table.index(),
                        made: Instant::now(),
                        json: json.clone(),
                    });
                    json
                }
            }
        })
        .await
    }

    /// The index of the latest durable view, for lease grants.
    pub fn durable_index(&self) -> u64 {
        *self.durable.borrow()
    }

    /// The committer: writes what is queued whenever something is.
    async fn run_committer(self: Arc<Self>) {
        loop {
            self.queued.notified().await;
            self.commit_queued().await;
        }
    }

    /// Writes what was queued, batch after batch, until nothing is: one command to the
    /// store per batch, however many changes it holds (and the store's writer commits
    /// it with whatever else is waiting).
    async fn commit_queued(&self) {
        self.commit_queued_with(|delta| self.store.submit(delta))
            .await
    }

    /// [`RegistryState::commit_queued`] with `write` committing each batch (a test
    /// passes one that fails).
    async fn commit_queued_with<W, F>(&self, write: W)
    where
        W: Fn(StoredDelta) -> F,
        F: Future<Output = Result<(), StoreError>>,
    {
        loop {
            let batch = std::mem::take(&mut self.inner.lock().queued);
            if batch.is_empty() {
                return;
            }
            let delta = StoredDelta::of(batch.iter().map(|q| &q.change));
            let index = delta.index;
            let outcome = match write(delta).await {
                Ok(()) => {
                    self.durable.send_replace(index);
                    Ok(())
                }
                Err(e) => {
                    let undone = self.undo_from(&batch);
                    tracing::error!(error = %e, changes = undone, "could not persist registry changes; undone, the instances will register again");
                    Err(NotPersisted(e.to_string()))
                }
            };
            for q in batch {
                if let Some(done) = q.done {
                    let _ = done.send(outcome.clone());
                }
            }
        }
    }

    /// Undoes `failed` and every change queued after it, last first, moves the index
    /// past all of them and publishes it. Returns how many changes were undone.
    fn undo_from(&self, failed: &[QueuedChange]) -> usize {
        let mut inner = self.inner.lock();
        let later = std::mem::take(&mut inner.queued);
        for q in later.iter().rev().chain(failed.iter().rev()) {
            inner.table.undo(&q.change);
        }
        let index = inner.table.skip_index();
        inner.rollbacks += 1;
        drop(inner);
        self.durable.send_replace(index);
        let error = NotPersisted("an earlier change in its batch could not be written".into());
        let undone = failed.len() + later.len();
        for q in later {
            if let Some(done) = q.done {
                let _ = done.send(Err(error.clone()));
            }
        }
        undone
    }
}

impl<T> Applied<T> {
    /// The result, once the change it made is on disk (or, if it made none, once the
    /// view it saw is); [`NotPersisted`] if it was undone.
    pub async fn durable(self, state: &RegistryState) -> Result<T, NotPersisted> {
        match self.done {
            Some(done) => match done.await {
                Ok(Ok(())) => Ok(self.out),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(NotPersisted("the registry is stopping".into())),
            },
            None if state.settled(self.index, self.rollbacks).await => Ok(self.out),
            None => Err(NotPersisted(
                "a change before it could not be written".into(),
            )),
        }
    }
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
        !ctx.config.tls.insecure,
        ctx.shutdown.clone(),
    )?);
    spawn_committer(state.clone());
    eviction::spawn_evictor(state.clone(), ctx.shutdown.clone());
    Ok(Arc::new(move |cfg| http::routes(cfg, state.clone())))
}

/// The one task that writes changes to the file. It outlives the shutdown signal: the
/// deregistrations of a draining cluster still need their commits.
fn spawn_committer(state: Arc<RegistryState>) {
    tokio::spawn(state.run_committer());
}

#[cfg(test)]
mod tests {
    use svc_platform::registry_api::Registration;

    use super::*;

    fn state(dir: &tempfile::TempDir) -> Arc<RegistryState> {
        let store = Arc::new(Store::open(&dir.path().join("registry.redb")).unwrap());
        let state = RegistryState::open(
            store,
            RegistrySettings::default(),
            vec!["orders".into()],
            ["orders".to_string()].into(),
            true,
            Shutdown::new(),
        )
        .unwrap();
        Arc::new(state)
    }

    fn reg(id: &str) -> Registration {
        Registration {
            role: "orders".into(),
            instance_id: id.into(),
            address: format!("https://{id}:1"),
            version: "1".into(),
            metadata: Default::default(),
        }
    }

    fn register(state: &RegistryState, id: &str) -> Applied<u64> {
        state.change(|t| {
            let change = t.register(reg(id), Instant::now(), 1).unwrap();
            (t.index(), change)
        })
    }

    #[tokio::test]
    async fn changes_are_answered_once_on_disk_and_come_back_after_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir);
        let committer = tokio::spawn(state.clone().run_committer());
        let (a, b) = (register(&state, "a"), register(&state, "b"));
        // Nothing is durable before the committer wrote it.
        assert_eq!(state.durable_index(), 0);
        assert_eq!(a.durable(&state).await.unwrap(), 1);
        assert_eq!(b.durable(&state).await.unwrap(), 2);
        let (index, json) = state.catalog_json().await;
        assert_eq!(index, 2);
        assert!(String::from_utf8_lossy(&json).contains("\"b\""));
        let gone = state.change(|t| ((), t.deregister("orders", "a")));
        gone.durable(&state).await.unwrap();
        committer.abort();
        let _ = committer.await;
        drop(state);
        let restarted = self::state(&dir);
        let inner = restarted.inner.lock();
        assert_eq!(inner.table.index(), 3);
        assert_eq!(inner.table.instance_count(), 1);
        assert_eq!(restarted.durable_index(), 3);
    }

    #[tokio::test]
    async fn a_batch_that_cannot_be_written_is_undone_and_answered_with_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let state = state(&dir);
        let a = register(&state, "a");
        let b = register(&state, "b");
        // A reader that saw the undone state (index 2) must not be left with it.
        let reader = {
            let state = state.clone();
            tokio::spawn(async move { state.read(|t| (t.instance_count(), t.index())).await })
        };
        state
            .commit_queued_with(|_| async { Err(StoreError::Storage("disk full".into())) })
            .await;
        let e = a.durable(&state).await.unwrap_err();
        assert!(e.to_string().contains("disk full"), "{e}");
        assert!(b.durable(&state).await.is_err());
        // Both undone; the index moved past every index handed out, and is published.
        assert_eq!(state.inner.lock().table.instance_count(), 0);
        assert_eq!(state.durable_index(), 3);
        assert_eq!(reader.await.unwrap(), (3, (0, 3)));
        // The file never had them.
        assert_eq!(persist::restore(&state.store).unwrap(), (vec![], 0));
    }
}
