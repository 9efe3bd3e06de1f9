//! The instance's redb file: opened once at start-up, shared by the role and the platform.
//!
//! Reads take a snapshot ([`Store::begin_read`]) and run beside everything else. Writes
//! are [`Command`]s submitted to the store's one writer, which group-commits them
//! (see [`commands`]); there is no other way to write, so every change is a command.
//!
//! Opening fails with a typed error (locked by another process, corrupt, unwritable)
//! that names the file, so start-up can say exactly what is wrong and exit non-zero
//! instead of panicking. A file written by redb 2 is upgraded first ([`upgrade`]). The
//! file is created readable by its owner only. Values are stored as JSON bytes and
//! decoded with an error, never a panic, so a damaged row is reported rather than
//! crashing the process.

pub mod commands;
mod upgrade;

use std::path::{Path, PathBuf};

use crate::private_files;
use crate::secret_key::{self, SecretKey, SecretKeyError};
use std::sync::Arc;

use redb::{
    Database, DatabaseError, ReadTransaction, ReadableDatabase, ReadableTable, StorageError,
    TableDefinition,
};
use serde::{de::DeserializeOwned, Serialize};

pub use commands::{Command, Durability};
use commands::{Writer, WriterMetrics};

/// A table of JSON documents keyed by string: the shape every role's tables take.
pub type JsonTable = TableDefinition<'static, &'static str, &'static [u8]>;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{path}: the state file is locked by another running process (is this instance already running?)")]
    Locked { path: PathBuf },
    #[error("{path}: the state file is corrupt or not a redb file: {detail}")]
    Corrupt { path: PathBuf, detail: String },
    #[error("{path}: cannot open the state file: {source}")]
    Unwritable {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: cannot open the state file: {detail}")]
    Open { path: PathBuf, detail: String },
    #[error("state file operation failed: {0}")]
    Storage(String),
    #[error("a stored value could not be decoded: {0}")]
    Decode(String),
}

macro_rules! storage_error_from {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Storage(e.to_string())
            }
        }
    )*};
}
storage_error_from!(
    redb::TransactionError,
    redb::TableError,
    redb::CommitError,
    redb::StorageError
);

/// Lets a role's error type take redb errors with `?`, as storage failures: the type
/// needs `From<StoreError>` (usually a `Store(#[from] StoreError)` variant).
#[macro_export]
macro_rules! redb_errors_into {
    ($target:ty) => {
        $crate::redb_errors_into!(@each $target;
            redb::TransactionError, redb::TableError, redb::CommitError, redb::StorageError);
    };
    (@each $target:ty; $($t:ty),*) => {$(
        impl From<$t> for $target {
            fn from(e: $t) -> Self {
                <$target>::from($crate::store::StoreError::from(e))
            }
        }
    )*};
}
pub use crate::redb_errors_into;

/// One open redb file and its writer. Share it behind an `Arc`; dropping the last one
/// lets the writer finish what is queued and closes the file.
pub struct Store {
    // Declared first: dropped (and joined) before the file is closed.
    writer: Writer,
    db: Arc<Database>,
    metrics: WriterMetrics,
    path: PathBuf,
}

impl Store {
    /// Opens (or creates) the file, creating its directory if needed, and starts its
    /// writer.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let unwritable = |source| StoreError::Unwritable {
            path: path.to_path_buf(),
            source,
        };
        // It holds orders and payments: owner-only, like its directory.
        private_files::create_parent(path).map_err(unwritable)?;
        private_files::touch(path).map_err(unwritable)?;
        let db = match Database::create(path) {
            Err(DatabaseError::UpgradeRequired(version)) => {
                upgrade::upgrade_in_place(path, version)?;
                Database::create(path)
            }
            opened => opened,
        }
        .map_err(|e| classify(path, e))?;
        let db = Arc::new(db);
        let metrics = WriterMetrics::new();
        let writer = Writer::start(db.clone(), metrics.clone()).map_err(unwritable)?;
        Ok(Store {
            writer,
            db,
            metrics,
            path: path.to_path_buf(),
        })
    }

    /// The secret key named `purpose` kept beside this store's file (never in it): made
    /// on first use. See [`secret_key`](crate::secret_key).
    pub fn secret_key(&self, purpose: &str) -> Result<SecretKey, SecretKeyError> {
        SecretKey::load_or_create(&secret_key::path_beside(&self.path, purpose))
    }

    /// A consistent snapshot to read from; writes committed later are not in it.
    pub fn begin_read(&self) -> Result<ReadTransaction, StoreError> {
        Ok(self.db.begin_read()?)
    }

    /// Submits `command` to the writer and waits for its result, which comes after the
    /// commit that holds it (see [`commands`]).
    pub async fn submit<C: Command>(&self, command: C) -> Result<C::Output, C::Error> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.writer.submit(command, commands::Reply::Async(reply))?;
        answer.await.map_err(|_| commands::stopped())?
    }

    /// [`Store::submit`] that blocks the thread until the commit: for start-up, the
    /// blocking pool and tests, never for a request handler.
    pub fn submit_blocking<C: Command>(&self, command: C) -> Result<C::Output, C::Error> {
        let (reply, answer) = std::sync::mpsc::sync_channel(1);
        self.writer
            .submit(command, commands::Reply::Blocking(reply))?;
        answer.recv().map_err(|_| commands::stopped())?
    }

    /// The writer's counters (commits by durability, commands, batch sizes), for the
    /// instance's metrics registry.
    pub fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        self.metrics.collectors()
    }

    /// Reads one JSON document.
    pub fn get_json<T: DeserializeOwned>(
        &self,
        table: JsonTable,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.begin_read()?;
        let table = match tx.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        match table.get(key)? {
            Some(v) => decode(v.value()).map(Some),
            None => Ok(None),
        }
    }

    /// Reads every document of a table (any key type), in key order.
    pub fn scan_json<T: DeserializeOwned, K: redb::Key + 'static>(
        &self,
        table: TableDefinition<'static, K, &'static [u8]>,
    ) -> Result<Vec<T>, StoreError> {
        let tx = self.begin_read()?;
        let table = match tx.open_table(table) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut out = Vec::new();
        for row in table.iter()? {
            let (_, v) = row?;
            out.push(decode(v.value())?);
        }
        Ok(out)
    }
}

/// `table` in a read transaction, or `None` when nothing was ever written to it.
pub fn open_if_exists<K: redb::Key + 'static, V: redb::Value + 'static>(
    tx: &ReadTransaction,
    table: TableDefinition<K, V>,
) -> Result<Option<redb::ReadOnlyTable<K, V>>, StoreError> {
    match tx.open_table(table) {
        Ok(t) => Ok(Some(t)),
        Err(redb::TableError::TableDoesNotExist(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain data types to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode(e.to_string()))
}

pub(crate) fn classify(path: &Path, err: DatabaseError) -> StoreError {
    let path = path.to_path_buf();
    match err {
        DatabaseError::DatabaseAlreadyOpen => StoreError::Locked { path },
        DatabaseError::Storage(StorageError::Corrupted(detail)) => {
            StoreError::Corrupt { path, detail }
        }
        DatabaseError::Storage(StorageError::Io(source)) => {
            if source.kind() == std::io::ErrorKind::WouldBlock {
                StoreError::Locked { path }
            } else if matches!(
                source.kind(),
                std::io::ErrorKind::InvalidData | std::io::ErrorKind::UnexpectedEof
            ) {
                StoreError::Corrupt {
                    path,
                    detail: source.to_string(),
                }
            } else {
                StoreError::Unwritable { path, source }
            }
        }
        other => StoreError::Open {
            path,
            detail: other.to_string(),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde::Deserialize;

    const T: JsonTable = TableDefinition::new("t");

    #[derive(Serialize, Deserialize)]
    struct Put(String, u32);

    impl Command for Put {
        type Output = ();
        type Error = StoreError;
        fn apply(&self, tx: &redb::WriteTransaction) -> Result<(), StoreError> {
            tx.open_table(T)?
                .insert(self.0.as_str(), encode(&self.1).as_slice())?;
            Ok(())
        }
    }

    #[test]
    fn round_trips_json() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a/b.redb")).unwrap();
        assert_eq!(store.get_json::<u32>(T, "k").unwrap(), None);
        store.submit_blocking(Put("k".into(), 7)).unwrap();
        assert_eq!(store.get_json::<u32>(T, "k").unwrap(), Some(7));
        assert_eq!(store.scan_json::<u32, _>(T).unwrap(), vec![7]);
    }

    #[test]
    fn the_file_is_private_to_its_owner() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("p.redb");
        let _store = Store::open(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }

    #[test]
    fn second_open_is_locked_and_a_dropped_store_can_be_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        let first = Store::open(&path).unwrap();
        first.submit_blocking(Put("k".into(), 1)).unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::Locked { .. })));
        drop(first);
        let again = Store::open(&path).unwrap();
        assert_eq!(again.get_json::<u32>(T, "k").unwrap(), Some(1));
    }

    #[test]
    fn garbage_file_is_an_error_not_a_panic() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        std::fs::write(&path, vec![0x5a; 8192]).unwrap();
        let err = Store::open(&path).err().expect("garbage must not open");
        assert!(
            matches!(err, StoreError::Corrupt { .. } | StoreError::Open { .. }),
            "{err}"
        );
    }
}
