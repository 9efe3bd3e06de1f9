//! The instance's local view of its peers, kept fresh by watching the registry.
//!
//! Reads never touch the network: callers ask the view, which a background task
//! refreshes with blocking queries on the registry's catalog, moving to the next
//! registry when one stops answering. When none answers, the last view stays in use
//! (discovery may be stale, it must never stop traffic), and every change is written to
//! the instance's redb file so a restart during a registry outage still finds peers.

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
    catalog: Arc<RwLock<Catalog>>,
    store: Arc<Store>,
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
            catalog: Arc::new(RwLock::new(catalog)),
            store,
        }
    }

    /// The known instances of `role`.
    pub(crate) fn instances(&self, role: &str) -> Vec<Instance> {
        self.catalog.read().instances(role).to_vec()
    }

    pub(crate) fn snapshot(&self) -> Catalog {
        self.catalog.read().clone()
    }

    async fn replace(&self, catalog: Catalog) {
        *self.catalog.write() = catalog.clone();
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
                    if index != Some(catalog.index) && *self.catalog.read() != catalog {
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
