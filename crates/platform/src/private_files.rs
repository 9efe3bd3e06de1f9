//! Files and directories only their owner may read: every state file, log file, key and
//! the directories holding them. They hold orders, payments and traces of requests, so
//! whatever the umask, svc creates files 0600 and directories 0700. Existing files and
//! directories keep the mode their owner gave them.

use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::Path;

pub const FILE_MODE: u32 = 0o600;
pub const DIR_MODE: u32 = 0o700;

/// Creates `dir` and any missing parent, each 0700.
pub fn create_dir_all(dir: &Path) -> io::Result<()> {
    if dir.as_os_str().is_empty() || dir.is_dir() {
        return Ok(());
    }
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Creates the parent directory of `path` if it is missing (see [`create_dir_all`]).
pub fn create_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => create_dir_all(dir),
        None => Ok(()),
    }
}

/// Creates `path` empty and 0600 if it does not exist yet; leaves an existing file alone.
pub fn touch(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(FILE_MODE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// Opens `path` for appending, creating it 0600 (and its directory 0700) if missing.
pub fn open_append(path: &Path) -> io::Result<File> {
    create_parent(path)?;
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(FILE_MODE)
        .open(path)
}

/// Replaces `path` with `contents` in one step (a synced 0600 temporary file renamed over
/// it), so a reader sees the old contents or the new, never half of them.
pub fn write_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    create_parent(path)?;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = Path::new(&tmp);
    let mut file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(FILE_MODE)
        .open(tmp)?;
    file.write_all(contents)?;
    file.sync_all()?;
    std::fs::rename(tmp, path)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn files_and_directories_are_private_whatever_the_umask() {
        let root = tempfile::tempdir().unwrap();
        let log = root.path().join("a/b/svc.jsonl");
        open_append(&log).unwrap();
        assert_eq!(mode(&log), FILE_MODE);
        assert_eq!(mode(&root.path().join("a")), DIR_MODE);
        assert_eq!(mode(&root.path().join("a/b")), DIR_MODE);
        let key = root.path().join("c/key");
        write_atomically(&key, b"secret").unwrap();
        assert_eq!(
            (mode(&key), std::fs::read(&key).unwrap()),
            (FILE_MODE, b"secret".to_vec())
        );
        let state = root.path().join("c/state");
        touch(&state).unwrap();
        assert_eq!(mode(&state), FILE_MODE);
    }

    #[test]
    fn existing_files_keep_their_contents() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("f");
        std::fs::write(&path, "kept").unwrap();
        touch(&path).unwrap();
        open_append(&path).unwrap().write_all(b" and more").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "kept and more");
    }
}
