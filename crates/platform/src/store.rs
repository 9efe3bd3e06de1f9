//! The instance's redb file: opened once at start-up, shared by the role and the platform.
//!
//! Opening fails with a typed error (locked by another process, corrupt, unwritable)
//! that names the file, so start-up can say exactly what is wrong and exit non-zero
//! instead of panicking. Values are stored as JSON bytes and decoded with an error, never
//! a panic, so a damaged row is reported rather than crashing the process.

use std::path::{Path, PathBuf};

use redb::{Database, DatabaseError, ReadableTable, StorageError, TableDefinition};
use serde::{de::DeserializeOwned, Serialize};

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

/// One open redb file. Cheap to share behind an `Arc`; redb serialises writers itself.
pub struct Store {
    db: Database,
}

impl Store {
    /// Opens (or creates) the file, creating its directory if needed.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|source| StoreError::Unwritable {
                path: path.to_path_buf(),
                source,
            })?;
        }
        let db = Database::create(path).map_err(|e| classify(path, e))?;
        Ok(Store { db })
    }

    pub fn db(&self) -> &Database {
        &self.db
    }

    /// Runs `change` in one write transaction: committed if it returns `Ok`, abandoned
    /// (so nothing it wrote survives) if it returns `Err`.
    pub fn write<T, E: From<StoreError>>(
        &self,
        change: impl FnOnce(&redb::WriteTransaction) -> Result<T, E>,
    ) -> Result<T, E> {
        let tx = self.db.begin_write().map_err(StoreError::from)?;
        match change(&tx) {
            Ok(out) => {
                tx.commit().map_err(StoreError::from)?;
                Ok(out)
            }
            Err(e) => {
                // The refusal is the answer; a failed abort only means redb drops the
                // transaction itself.
                if let Err(abort) = tx.abort() {
                    tracing::warn!(error = %abort, "cannot abort a refused transaction");
                }
                Err(e)
            }
        }
    }

    /// Reads one JSON document.
    pub fn get_json<T: DeserializeOwned>(
        &self,
        table: JsonTable,
        key: &str,
    ) -> Result<Option<T>, StoreError> {
        let tx = self.db.begin_read()?;
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
        let tx = self.db.begin_read()?;
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

    /// Writes one JSON document in its own transaction.
    pub(crate) fn put_json<T: Serialize>(
        &self,
        table: JsonTable,
        key: &str,
        value: &T,
    ) -> Result<(), StoreError> {
        let tx = self.db.begin_write()?;
        {
            let mut t = tx.open_table(table)?;
            t.insert(key, encode(value).as_slice())?;
        }
        tx.commit()?;
        Ok(())
    }
}

pub fn encode<T: Serialize>(value: &T) -> Vec<u8> {
    // Serialising our own plain data types to JSON cannot fail.
    serde_json::to_vec(value).unwrap_or_default()
}

pub fn decode<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|e| StoreError::Decode(e.to_string()))
}

fn classify(path: &Path, err: DatabaseError) -> StoreError {
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

    const T: JsonTable = TableDefinition::new("t");

    #[test]
    fn round_trips_json() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("a/b.redb")).unwrap();
        assert_eq!(store.get_json::<u32>(T, "k").unwrap(), None);
        store.put_json(T, "k", &7u32).unwrap();
        assert_eq!(store.get_json::<u32>(T, "k").unwrap(), Some(7));
        assert_eq!(store.scan_json::<u32, _>(T).unwrap(), vec![7]);
    }

    #[test]
    fn second_open_is_locked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.redb");
        let _first = Store::open(&path).unwrap();
        assert!(matches!(Store::open(&path), Err(StoreError::Locked { .. })));
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
