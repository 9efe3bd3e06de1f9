//! What the registry writes to its redb file, and reads back after a restart.
//!
//! The rows are the registered instances (`role/instance_id` → the JSON of an
//! `Instance`) and the index. A batch of changes made in memory is persisted as one
//! [`StoredDelta`]: the rows put, the rows deleted, and the new index, the changes of
//! the batch merged in order (a row changed twice is written once, as it ended). It is
//! plain data, a [`Command`] of the store: its writer commits it together with whatever
//! else is waiting, in one transaction with one fsync.
//!
//! Registrations are soft state: every instance renews every second and registers
//! again when a renewal is refused. So a batch that cannot be written is undone in
//! memory (`RegistryState`), every change in it is answered with an error, and the
//! instances concerned simply try again; nothing half-written remains, because the
//! batch is one transaction.

use std::collections::BTreeMap;

use redb::{TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use svc_platform::registry_api::Instance;
use svc_platform::store::{Command, JsonTable, Store, StoreError};

use super::catalog_json::InstanceJson;
use super::lease_table::Change;

const INSTANCES: JsonTable = TableDefinition::new("registry_instances");
const META: JsonTable = TableDefinition::new("registry_meta");
const INDEX_KEY: &str = "index";

/// The rows a batch of changes put and deleted, and the index it ends at.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct StoredDelta {
    /// `(role/instance_id, JSON of the Instance)` to write.
    pub put: Vec<(String, String)>,
    /// `role/instance_id` to delete.
    pub delete: Vec<String>,
    pub index: u64,
}

impl StoredDelta {
    /// Merges `changes` (in index order) into the rows as they end.
    pub fn of<'a>(changes: impl IntoIterator<Item = &'a Change>) -> StoredDelta {
        let mut rows: BTreeMap<String, Option<String>> = BTreeMap::new();
        let mut index = 0;
        for change in changes {
            index = index.max(change.index);
            for row in &change.rows {
                let json = row.after.as_ref().map(|lease| {
                    serde_json::to_string(&InstanceJson {
                        role: &row.role,
                        lease,
                    })
                    .expect("an instance serializes")
                });
                rows.insert(row_key(&row.role, &row.instance_id), json);
            }
        }
        let mut delta = StoredDelta {
            index,
            ..StoredDelta::default()
        };
        for (key, json) in rows {
            match json {
                Some(json) => delta.put.push((key, json)),
                None => delta.delete.push(key),
            }
        }
        delta
    }
}

impl Command for StoredDelta {
    type Output = ();
    type Error = StoreError;

    /// Writes the delta inside `tx` (which may hold other commands too).
    fn apply(&self, tx: &WriteTransaction) -> Result<(), StoreError> {
        let mut rows = tx.open_table(INSTANCES)?;
        for (key, json) in &self.put {
            rows.insert(key.as_str(), json.as_bytes())?;
        }
        for key in &self.delete {
            rows.remove(key.as_str())?;
        }
        let mut meta = tx.open_table(META)?;
        meta.insert(
            INDEX_KEY,
            svc_platform::store::encode(&self.index).as_slice(),
        )?;
        Ok(())
    }
}

/// The instances and the index a previous run left.
pub fn restore(store: &Store) -> Result<(Vec<Instance>, u64), StoreError> {
    let instances = store.scan_json(INSTANCES)?;
    let index = store.get_json(META, INDEX_KEY)?.unwrap_or(0);
    Ok((instances, index))
}

fn row_key(role: &str, id: &str) -> String {
    format!("{role}/{id}")
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use svc_platform::registry_api::Registration;

    use std::sync::Arc;

    use super::*;
    use crate::roles::registry::LeaseTable;

    fn reg(id: &str, address: &str) -> Registration {
        Registration {
            role: "orders".into(),
            instance_id: id.into(),
            address: address.into(),
            version: "1".into(),
            metadata: Default::default(),
        }
    }

    #[test]
    fn a_batch_writes_each_row_as_it_ended_and_the_last_index() {
        let mut t = LeaseTable::new(Duration::from_secs(3));
        let now = Instant::now();
        let a1 = t.register(reg("a", "http://a:1"), now, 1).unwrap().unwrap();
        let b = t.register(reg("b", "http://b:1"), now, 1).unwrap().unwrap();
        let a2 = t.register(reg("a", "http://a:2"), now, 2).unwrap().unwrap();
        let gone = t.deregister("orders", "b").unwrap();
        let delta = StoredDelta::of([&a1, &b, &a2, &gone]);
        assert_eq!(delta.index, 4);
        assert_eq!(delta.delete, ["orders/b"]);
        assert_eq!(delta.put.len(), 1);
        let (key, json) = &delta.put[0];
        assert_eq!(key, "orders/a");
        let stored: Instance = serde_json::from_str(json).unwrap();
        assert_eq!(stored.address, "http://a:2");
    }

    #[tokio::test]
    async fn what_is_persisted_comes_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(Store::open(&dir.path().join("r.redb")).unwrap());
        let mut t = LeaseTable::new(Duration::from_secs(3));
        let now = Instant::now();
        let a = t.register(reg("a", "http://a:1"), now, 7).unwrap().unwrap();
        let b = t.register(reg("b", "http://b:1"), now, 7).unwrap().unwrap();
        store.submit(StoredDelta::of([&a, &b])).await.unwrap();
        let gone = t.deregister("orders", "a").unwrap();
        store.submit(StoredDelta::of([&gone])).await.unwrap();
        let (instances, index) = restore(&store).unwrap();
        assert_eq!(index, 3);
        assert_eq!(instances.len(), 1);
        assert_eq!(instances[0].instance_id, "b");
        assert_eq!(instances[0].registered_at_ms, 7);
    }
}
