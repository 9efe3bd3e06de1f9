//! The instance's local view of its peers, kept fresh by watching the registry.
//!
//! Reads never touch the network: callers ask the view, which a background task
//! refreshes with blocking queries on the registry's catalog, moving to the next
//! registry when one stops answering. When none answers, the last view stays in use
//! (discovery may be stale, it must never stop traffic), and every change is written to
//! the instance's redb file so a restart during a registry outage still finds peers.
//!
//! A call asks the view on every attempt, so a read costs a lock, a map lookup and a
//! reference count: the view keeps each role's instances as one shared, immutable
//! list ([`Arc<[Instance]>`](Arc)), rebuilt only when the catalog changes, and hands
//! that out instead of a copy.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::RwLock;
use redb::{TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::backoff::Backoff;
use super::registry_api::{Catalog, Instance};
use super::registry_client::RegistryClient;
use super::shutdown::Shutdown;
use super::store::{self, Command, JsonTable, Store, StoreError};

const PEER_VIEW: JsonTable = TableDefinition::new("platform_peer_view");
const CATALOG_KEY: &str = "catalog";

/// Replaces the persisted view.
#[derive(Serialize, Deserialize)]
struct SaveView(Catalog);

impl Command for SaveView {
    type Output = ();
    type Error = StoreError;
    fn apply(&self, tx: &WriteTransaction) -> Result<(), StoreError> {
        tx.open_table(PEER_VIEW)?
            .insert(CATALOG_KEY, store::encode(&self.0).as_slice())?;
        Ok(())
    }
}

/// Pause after a failed watch, growing with consecutive failures up to the cap.
const WATCH_RETRY: Backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(2));

#[derive(Clone)]
pub struct PeerView {
    current: Arc<RwLock<Arc<Snapshot>>>,
    store: Arc<Store>,
}

/// One catalog and, made from it once, each role's instances as a shared list.
struct Snapshot {
    catalog: Catalog,
    by_role: HashMap<String, Arc<[Instance]>>,
    /// What a role with no instance gets (shared: no allocation per read).
    none: Arc<[Instance]>,
}

impl Snapshot {
    fn new(catalog: Catalog) -> Snapshot {
        let by_role = catalog
            .roles
            .iter()
            .map(|(role, instances)| (role.clone(), Arc::from(instances.as_slice())))
            .collect();
        Snapshot {
            catalog,
            by_role,
            none: Arc::from(Vec::new()),
        }
    }

    fn instances(&self, role: &str) -> Arc<[Instance]> {
        self.by_role.get(role).unwrap_or(&self.none).clone()
    }
}

impl PeerView {
    /// Starts from the view persisted by the previous run, if any.
    pub fn restore(store: Arc<Store>) -> PeerView {
        let catalog = match store.get_json::<Catalog>(PEER_VIEW, CATALOG_KEY) {
            Ok(Some(c)) => {
                tracing::info!(instances = c.len(), "restored the persisted peer view");
                c
            }
            Ok(None) => Catalog::default(),
            Err(e) => {
                tracing::warn!(error = %e, "persisted peer view unreadable; starting empty");
                Catalog::default()
            }
        };
        PeerView {
            current: Arc::new(RwLock::new(Arc::new(Snapshot::new(catalog)))),
            store,
        }
    }

    /// The known instances of `role`: the view's own list, shared, not a copy.
    pub(crate) fn instances(&self, role: &str) -> Arc<[Instance]> {
        self.current.read().instances(role)
    }

    pub(crate) fn snapshot(&self) -> Catalog {
        self.current.read().catalog.clone()
    }

    async fn replace(&self, catalog: Catalog) {
        let snapshot = Arc::new(Snapshot::new(catalog.clone()));
        *self.current.write() = snapshot;
        if let Err(e) = self.store.submit(SaveView(catalog)).await {
            tracing::warn!(error = %e, "could not persist the peer view");
        }
    }

    /// Watches the registries until shutdown.
    pub(crate) fn spawn_watch(&self, client: RegistryClient, wait: Duration, shutdown: Shutdown) {
        let view = self.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = view.watch(client, wait) => {}
                _ = shutdown.wait() => {}
            }
        });
    }

    async fn watch(&self, client: RegistryClient, wait: Duration) {
        let urls = client.urls().to_vec();
        if urls.is_empty() {
            return;
        }
        let mut current = 0usize;
        // Indexes are per registry: after switching, read at once, then block.
        let mut index: Option<u64> = None;
        let mut failures = 0u32;
        loop {
            let url = &urls[current % urls.len()];
            match client.catalog(url, index, wait).await {
                Ok(catalog) => {
                    if failures > 0 {
                        tracing::info!(registry = %url, "watching the registry again");
                    }
                    failures = 0;
                    if index != Some(catalog.index) && self.current.read().catalog != catalog {
                        tracing::debug!(registry = %url, index = catalog.index, instances = catalog.len(), "peer view updated");
                        self.replace(catalog.clone()).await;
                    }
                    index = Some(catalog.index);
                }
                Err(e) => {
                    if failures == 0 {
                        tracing::warn!(registry = %url, error = %e, "registry watch failed; keeping the last view");
                    }
                    failures = failures.saturating_add(1);
                    current += 1;
                    index = None;
                    let pause = WATCH_RETRY.delay(failures, &mut rand::rng());
                    tokio::time::sleep(pause).await;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn instance(role: &str, id: &str) -> Instance {
        Instance {
            role: role.into(),
            instance_id: id.into(),
            address: format!("http://127.0.0.1:1/{id}"),
            version: "0".into(),
            metadata: BTreeMap::new(),
            registered_at_ms: 0,
            renewed_at_ms: 0,
        }
    }

    fn catalog(index: u64, inventory: &[&str]) -> Catalog {
        let mut roles = BTreeMap::new();
        roles.insert(
            "inventory".to_string(),
            inventory
                .iter()
                .map(|id| instance("inventory", id))
                .collect(),
        );
        roles.insert("orders".to_string(), vec![instance("orders", "o-0")]);
        Catalog { index, roles }
    }

    fn ids(list: &[Instance]) -> Vec<&str> {
        list.iter().map(|i| i.instance_id.as_str()).collect()
    }

    #[tokio::test]
    async fn reads_share_one_list_per_role_until_the_catalog_changes_and_it_is_persisted() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("v.redb")).unwrap());
        let view = PeerView::restore(store.clone());
        assert!(view.instances("inventory").is_empty());
        assert!(view.instances("nobody").is_empty());

        view.replace(catalog(1, &["i-0", "i-1"])).await;
        let first = view.instances("inventory");
        assert_eq!(ids(&first), ["i-0", "i-1"]);
        assert!(
            Arc::ptr_eq(&first, &view.instances("inventory")),
            "a read hands out the view's list, not a copy"
        );
        assert_eq!(ids(&view.instances("orders")), ["o-0"]);
        assert!(view.instances("payments").is_empty());

        view.replace(catalog(2, &["i-1"])).await;
        assert_eq!(ids(&view.instances("inventory")), ["i-1"]);
        assert_eq!(ids(&first), ["i-0", "i-1"], "a list handed out stays whole");
        assert_eq!(view.snapshot(), catalog(2, &["i-1"]));

        // The next run starts from what was persisted.
        let restored = PeerView::restore(store);
        assert_eq!(ids(&restored.instances("inventory")), ["i-1"]);
        assert_eq!(restored.snapshot().index, 2);
    }
}
