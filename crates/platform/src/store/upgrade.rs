//! Upgrading a state file written by redb 2 (file format v2) to the format redb 4 reads.
//!
//! redb 3 and later refuse v2 files; only redb 2.6 can rewrite one as v3. The upgrade
//! works on a copy next to the file (`<file>.upgrading`): the copy is upgraded by redb
//! 2.6, opened by redb 4 and checked to hold as many rows in every table as the original,
//! synced, and only then renamed over the original. Until that rename the original is
//! untouched, so a crash or a failed check at any step leaves the file as it was (the
//! next start removes the copy and tries again).
//!
//! Keys or values that are tuples of variable width changed encoding in v3 (see redb's
//! change log); a role that has such a table renames it and rebuilds it after the
//! upgrade. The row counts checked here do not depend on the encoding.

use std::fs::{self, File, OpenOptions};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use redb::ReadableDatabase;

use super::{classify, StoreError};

/// Upgrades `path`, which redb 4 found in file format `version`, in place.
pub(super) fn upgrade_in_place(path: &Path, version: u8) -> Result<(), StoreError> {
    let copy = copy_path(path);
    let fail = |detail: String| StoreError::Open {
        path: path.to_path_buf(),
        detail: format!("upgrading the state file from redb file format v{version}: {detail}"),
    };
    let io = |what: &str, e: std::io::Error| fail(format!("{what}: {e}"));

    if copy.exists() {
        // Left by an upgrade that did not finish: the original is intact, start over.
        fs::remove_file(&copy).map_err(|e| io("cannot remove an unfinished upgrade", e))?;
    }
    copy_private(path, &copy).map_err(|e| io("cannot copy the file", e))?;

    let before = {
        let mut db = redb2::Database::open(&copy).map_err(|e| fail(e.to_string()))?;
        let before = rows_v2(&db).map_err(fail)?;
        db.upgrade().map_err(|e| fail(e.to_string()))?;
        before
    };
    let after = {
        let db = redb::Database::open(&copy).map_err(|e| classify(&copy, e))?;
        rows_v3(&db).map_err(fail)?
    };
    if before != after {
        return Err(fail(format!(
            "the upgraded copy {} does not hold the same rows (before {before:?}, after {after:?}); the original is unchanged",
            copy.display()
        )));
    }

    File::open(&copy)
        .and_then(|f| f.sync_all())
        .map_err(|e| io("cannot sync the upgraded copy", e))?;
    fs::rename(&copy, path).map_err(|e| io("cannot replace the original", e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io("cannot sync the directory", e))?;
    }
    tracing::info!(
        file = %path.display(),
        from = version,
        tables = after.len(),
        rows = after.iter().map(|(_, n)| n).sum::<u64>(),
        "upgraded the state file to redb file format v3"
    );
    Ok(())
}

fn copy_path(path: &Path) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(".upgrading");
    PathBuf::from(name)
}

/// Copies `from` to a new owner-only file `to`, synced.
fn copy_private(from: &Path, to: &Path) -> std::io::Result<()> {
    let mut source = File::open(from)?;
    let mut target = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(to)?;
    std::io::copy(&mut source, &mut target)?;
    target.sync_all()
}

/// `fn $name(db) -> every table's name and row count`, for one version of redb: the two
/// crates' types differ, the code does not.
macro_rules! row_counts {
    ($name:ident, $redb:ident) => {
        fn $name(db: &$redb::Database) -> Result<Vec<(String, u64)>, String> {
            use $redb::{ReadableTableMetadata, TableHandle};
            let tx = db.begin_read().map_err(|e| e.to_string())?;
            let mut out = Vec::new();
            for handle in tx.list_tables().map_err(|e| e.to_string())? {
                let table = tx
                    .open_untyped_table(handle.clone())
                    .map_err(|e| e.to_string())?;
                out.push((
                    handle.name().to_string(),
                    table.len().map_err(|e| e.to_string())?,
                ));
            }
            out.sort();
            Ok(out)
        }
    };
}
row_counts!(rows_v2, redb2);
row_counts!(rows_v3, redb);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Store;
    use redb::ReadableTableMetadata;

    const ROWS2: redb2::TableDefinition<&str, &[u8]> = redb2::TableDefinition::new("rows");
    const ROWS: redb::TableDefinition<&str, &[u8]> = redb::TableDefinition::new("rows");

    fn write_v2(path: &Path, rows: u32) {
        let db = redb2::Database::create(path).unwrap();
        let tx = db.begin_write().unwrap();
        {
            let mut t = tx.open_table(ROWS2).unwrap();
            for i in 0..rows {
                t.insert(format!("k{i:05}").as_str(), b"v".as_slice())
                    .unwrap();
            }
        }
        tx.commit().unwrap();
    }

    #[test]
    fn a_redb2_file_is_upgraded_in_place_and_keeps_every_row() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        write_v2(&path, 1000);
        assert!(matches!(
            redb::Database::open(&path),
            Err(redb::DatabaseError::UpgradeRequired(2))
        ));

        let store = Store::open(&path).unwrap();
        let tx = store.begin_read().unwrap();
        assert_eq!(tx.open_table(ROWS).unwrap().len().unwrap(), 1000);
        assert!(!copy_path(&path).exists(), "the working copy is gone");
    }

    #[test]
    fn an_unfinished_upgrade_is_started_over_from_the_untouched_original() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.redb");
        write_v2(&path, 10);
        // A crash mid-upgrade leaves a half-written copy behind.
        fs::write(copy_path(&path), b"half").unwrap();

        let store = Store::open(&path).unwrap();
        let tx = store.begin_read().unwrap();
        assert_eq!(tx.open_table(ROWS).unwrap().len().unwrap(), 10);
    }
}
