//! Values read from files and kept fresh while the instance runs: certificates, API keys.
//!
//! A [`Reloadable`] says which files it is read from and how to read them again. The
//! watcher ([`spawn`]) checks the files' modification time and size every `interval`
//! and reloads what changed; on SIGHUP ([`hangup`], through the process's
//! [`ReloadHub`]) it reloads everything at once and says when it is done. It guarantees:
//!
//! - a reload that fails keeps the value in use (the implementer swaps only a value that
//!   loaded whole), logs a warning naming what and why, and is tried again at the next
//!   check, in case the file was caught half written;
//! - the files are stamped *before* they are read, so a file replaced while it is read
//!   is seen as changed at the next check rather than missed;
//! - one task per watcher, stopped by the instance's [`Shutdown`].

pub(crate) mod hangup;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::shutdown::Shutdown;
pub use hangup::ReloadHub;

/// Something read from files that can be read again in place.
pub trait Reloadable: Send + Sync {
    /// What it is, in log lines: "tls certificates", "api keys".
    fn what(&self) -> &'static str;
    /// Which one, in log lines: the identity of a certificate, a file name.
    fn which(&self) -> String;
    /// The files it is read from: a change to any of them reloads it.
    fn files(&self) -> Vec<PathBuf>;
    /// Reads the files again and swaps the new value in only if it loaded whole; on
    /// error the value in use stays. `Ok` says what is in use now, for the log line.
    fn reload(&self) -> anyhow::Result<String>;
}

/// Modification time and size of each of a set of files; `None` for one that cannot be
/// read (missing, or no permission), so its appearance counts as a change too.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stamp(Vec<Option<(SystemTime, u64)>>);

impl Stamp {
    /// The stamp of `files` now.
    pub fn of<P: AsRef<Path>>(files: &[P]) -> Stamp {
        Stamp(
            files
                .iter()
                .map(|p| {
                    let meta = std::fs::metadata(p).ok()?;
                    Some((meta.modified().ok()?, meta.len()))
                })
                .collect(),
        )
    }
}

/// One [`Reloadable`] under watch, with the stamp of the files its value was read from.
pub struct Watched {
    item: Arc<dyn Reloadable>,
    seen: Stamp,
}

impl Watched {
    /// Watches `item` from now: its value counts as read from the files as they are now.
    pub(crate) fn new(item: Arc<dyn Reloadable>) -> Watched {
        let seen = Stamp::of(&item.files());
        Watched { item, seen }
    }

    /// Watches `item`, whose value was read from the files as `seen` (taken before they
    /// were read), so a change since is reloaded at the first check.
    pub fn since(item: Arc<dyn Reloadable>, seen: Stamp) -> Watched {
        Watched { item, seen }
    }

    /// Reloads if the files changed (or always when `forced`), and logs what happened.
    /// Returns whether a reload was tried.
    fn check(&mut self, forced: bool) -> bool {
        let now = Stamp::of(&self.item.files());
        if !forced && now == self.seen {
            return false;
        }
        let (what, which) = (self.item.what(), self.item.which());
        match self.item.reload() {
            Ok(detail) => {
                self.seen = now;
                tracing::info!(which, %detail, forced, "{what} reloaded");
            }
            // `seen` stays: tried again at the next check.
            Err(e) => tracing::warn!(
                which,
                error = format!("{e:#}"),
                "{what} not reloaded; the ones in use stay"
            ),
        }
        true
    }
}

/// Checks every item of `watched` every `interval`, and reloads all of them at once when
/// `hub` asks (SIGHUP), answering once done, until `shutdown`. Nothing to watch: no task.
pub fn spawn(mut watched: Vec<Watched>, interval: Duration, hub: &ReloadHub, shutdown: Shutdown) {
    if watched.is_empty() {
        return;
    }
    let mut requests = hub.join();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let done = tokio::select! {
                _ = shutdown.wait() => return,
                _ = tick.tick() => None,
                Some(done) = requests.recv() => Some(done),
            };
            for w in &mut watched {
                w.check(done.is_some());
            }
            if let Some(done) = done {
                let _ = done.send(());
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;
    use parking_lot::Mutex;

    /// A number read from a file; a file that is not a number fails to load.
    struct Number {
        path: PathBuf,
        value: Mutex<u64>,
    }

    impl Reloadable for Number {
        fn what(&self) -> &'static str {
            "number"
        }
        fn which(&self) -> String {
            self.path.display().to_string()
        }
        fn files(&self) -> Vec<PathBuf> {
            vec![self.path.clone()]
        }
        fn reload(&self) -> anyhow::Result<String> {
            let text = std::fs::read_to_string(&self.path)?;
            let n: u64 = text.trim().parse()?;
            *self.value.lock() = n;
            Ok(n.to_string())
        }
    }

    fn watched(dir: &Path, text: &str) -> (Arc<Number>, Watched) {
        let path = dir.join("n");
        std::fs::write(&path, text).unwrap();
        let n = Arc::new(Number {
            path,
            value: Mutex::new(text.parse().unwrap()),
        });
        let w = Watched::new(n.clone());
        (n, w)
    }

    #[test]
    fn unchanged_files_are_not_read_again() {
        let dir = tempfile::tempdir().unwrap();
        let (_, mut w) = watched(dir.path(), "1");
        assert!(!w.check(false));
        assert!(w.check(true), "SIGHUP reloads anyway");
    }

    #[test]
    fn a_change_is_reloaded_and_a_bad_file_keeps_the_old_value_until_fixed() {
        let dir = tempfile::tempdir().unwrap();
        let (n, mut w) = watched(dir.path(), "1");
        // A new length is a change whatever the clock's resolution.
        std::fs::write(&n.path, "22").unwrap();
        assert!(w.check(false));
        assert_eq!(*n.value.lock(), 22);
        std::fs::write(&n.path, "not a number").unwrap();
        assert!(w.check(false));
        assert_eq!(*n.value.lock(), 22, "the old value stays");
        assert!(w.check(false), "tried again, unchanged or not");
        std::fs::write(&n.path, "333").unwrap();
        assert!(w.check(false));
        assert_eq!(*n.value.lock(), 333);
        assert!(!w.check(false));
    }

    #[test]
    fn a_change_before_the_watch_began_is_caught_with_since() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        std::fs::write(&path, "1").unwrap();
        let before = Stamp::of(&[&path]);
        std::fs::write(&path, "44").unwrap();
        let n = Arc::new(Number {
            path,
            value: Mutex::new(1),
        });
        let mut w = Watched::since(n.clone(), before);
        assert!(w.check(false));
        assert_eq!(*n.value.lock(), 44);
    }

    #[test]
    fn a_missing_file_differs_from_a_present_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("n");
        let missing = Stamp::of(&[&path]);
        std::fs::write(&path, "").unwrap();
        assert_ne!(Stamp::of(&[&path]), missing);
    }
}
