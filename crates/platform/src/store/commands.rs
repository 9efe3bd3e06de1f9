//! Commands, and the one writer per store that group-commits them.
//!
//! Every change of state is a [`Command`]: plain data (it serialises, so the replication
//! to come can ship it) whose [`Command::apply`] is a function of the stored state and
//! the command alone. Time, ids and random choices are decided by whoever builds the
//! command, never inside `apply`, so applying the same commands to the same state in the
//! same order always ends in the same state.
//!
//! One thread per store, the writer, takes every command waiting, applies them in order
//! in one redb write transaction, commits once, and only then answers each with its own
//! result. What that buys: under load one `fdatasync` covers many commands, while a
//! lone command is still committed at once (the writer never waits to fill a batch).
//!
//! Guarantees:
//! - Nothing is answered before the commit that holds it; a command that needs
//!   durability ([`Durability::Immediate`], the default) is answered only once its
//!   commit is on disk.
//! - A command that fails (a refusal, a damaged row, a panic) changes nothing and does
//!   not disturb its batch: the transaction is abandoned and the others are applied
//!   again, in the same order, without it. Because applying is deterministic they get
//!   the results they had.
//! - Commands are applied in the order they were submitted.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, Opts};
use redb::{Database, WriteTransaction};
use serde::{de::DeserializeOwned, Serialize};
use tokio::sync::oneshot;

use super::StoreError;

/// Commands taken into one transaction at most; bounds how long the first waits.
const MAX_BATCH: usize = 512;

/// A change of state, applied by the store's writer.
pub trait Command: Serialize + DeserializeOwned + Send + 'static {
    type Output: Send + 'static;
    type Error: From<StoreError> + Send + 'static;

    /// Applies the command inside `tx`, which other commands of the same batch share.
    /// Must be deterministic: read the clock, make ids and roll dice before, and carry
    /// the results in the command. On `Err` whatever it wrote is undone.
    fn apply(&self, tx: &WriteTransaction) -> Result<Self::Output, Self::Error>;

    /// Whether its answer has to wait for the disk.
    fn durability(&self) -> Durability {
        Durability::Immediate
    }
}

/// How durable a command's commit must be before it is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// On disk before the answer.
    Immediate,
    /// Visible to reads before the answer, on disk with the next immediate commit; a
    /// crash before that loses it. Only for what can be redone: progress markers, cursors.
    Deferred,
}

/// A submitted command with the channel its answer goes back on, type-erased so that
/// commands of every type share one queue.
trait Job: Send {
    /// Applies the command; `false` if it failed (and must be undone).
    fn apply(&mut self, tx: &WriteTransaction) -> bool;
    fn durable(&self) -> bool;
    /// Sends the result, or the commit's failure.
    fn answer(self: Box<Self>, commit: Result<(), &StoreError>);
}

struct Submitted<C: Command> {
    command: C,
    result: Option<Result<C::Output, C::Error>>,
    reply: Reply<Result<C::Output, C::Error>>,
}

/// Where an answer goes: to an async submitter, or to a thread that blocks on it (at
/// start-up, in tests), which a oneshot's blocking receive does not allow everywhere.
pub(super) enum Reply<T> {
    Async(oneshot::Sender<T>),
    Blocking(mpsc::SyncSender<T>),
}

impl<T> Reply<T> {
    fn send(self, value: T) {
        // The submitter may have stopped waiting (its request was cancelled); the
        // change stands either way.
        let _ = match self {
            Reply::Async(tx) => tx.send(value).ok(),
            Reply::Blocking(tx) => tx.send(value).ok(),
        };
    }
}

impl<C: Command> Job for Submitted<C> {
    fn apply(&mut self, tx: &WriteTransaction) -> bool {
        let result =
            catch_unwind(AssertUnwindSafe(|| self.command.apply(tx))).unwrap_or_else(|_| {
                tracing::error!(
                    command = std::any::type_name::<C>(),
                    "a command panicked; it changed nothing"
                );
                Err(StoreError::Storage("the command failed unexpectedly".into()).into())
            });
        let ok = result.is_ok();
        self.result = Some(result);
        ok
    }

    fn durable(&self) -> bool {
        self.command.durability() == Durability::Immediate
    }

    fn answer(self: Box<Self>, commit: Result<(), &StoreError>) {
        let result = match commit {
            Ok(()) => self.result.unwrap_or_else(|| {
                Err(StoreError::Storage("the command was not applied".into()).into())
            }),
            Err(e) => Err(StoreError::Storage(e.to_string()).into()),
        };
        self.reply.send(result);
    }
}

/// What the writer counts, for `/metrics`.
#[derive(Clone)]
pub(super) struct WriterMetrics {
    commits: IntCounterVec,
    commands: IntCounterVec,
    batch: Histogram,
}

impl WriterMetrics {
    pub(super) fn new() -> WriterMetrics {
        WriterMetrics {
            commits: IntCounterVec::new(
                Opts::new(
                    "svc_store_commits_total",
                    "Write transactions committed by the store's writer, by durability \
                     (immediate ones end in an fdatasync).",
                ),
                &["durability"],
            )
            .expect("static metric definition"),
            commands: IntCounterVec::new(
                Opts::new(
                    "svc_store_commands_total",
                    "Commands the store's writer applied, by outcome (applied, failed).",
                ),
                &["outcome"],
            )
            .expect("static metric definition"),
            batch: Histogram::with_opts(
                HistogramOpts::new(
                    "svc_store_batch_commands",
                    "Commands per committed write transaction.",
                )
                .buckets(vec![
                    1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0, 256.0, 512.0,
                ]),
            )
            .expect("static metric definition"),
        }
    }

    pub(super) fn collectors(&self) -> Vec<Box<dyn prometheus::core::Collector>> {
        vec![
            Box::new(self.commits.clone()),
            Box::new(self.commands.clone()),
            Box::new(self.batch.clone()),
        ]
    }

    fn commit(&self, durable: bool) -> IntCounter {
        self.commits
            .with_label_values(&[if durable { "immediate" } else { "deferred" }])
    }
}

/// The sending side of the writer's queue, and the thread to join when the store closes.
pub(super) struct Writer {
    queue: Option<mpsc::Sender<Box<dyn Job>>>,
    thread: Option<JoinHandle<()>>,
}

impl Writer {
    pub(super) fn start(db: Arc<Database>, metrics: WriterMetrics) -> std::io::Result<Writer> {
        let (queue, jobs) = mpsc::channel::<Box<dyn Job>>();
        let thread = std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || run(&db, &jobs, &metrics))?;
        Ok(Writer {
            queue: Some(queue),
            thread: Some(thread),
        })
    }

    /// Queues `command`; `reply` gets its result after its commit.
    pub(super) fn submit<C: Command>(
        &self,
        command: C,
        reply: Reply<Result<C::Output, C::Error>>,
    ) -> Result<(), StoreError> {
        let job = Box::new(Submitted {
            command,
            result: None,
            reply,
        });
        self.queue
            .as_ref()
            .ok_or_else(stopped)?
            .send(job)
            .map_err(|_| stopped())
    }
}

pub(super) fn stopped() -> StoreError {
    StoreError::Storage("the store's writer has stopped".into())
}

impl Drop for Writer {
    /// Lets the writer finish what is queued, then waits for it, so the file is closed
    /// (and can be opened again) when the store is gone.
    fn drop(&mut self) {
        drop(self.queue.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn run(db: &Database, jobs: &mpsc::Receiver<Box<dyn Job>>, metrics: &WriterMetrics) {
    while let Ok(first) = jobs.recv() {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match jobs.try_recv() {
                Ok(job) => batch.push(job),
                Err(_) => break,
            }
        }
        let outcome = commit_batch(db, &mut batch, metrics);
        if let Err(e) = &outcome {
            tracing::error!(error = %e, commands = batch.len(), "cannot commit a batch of commands; none of them took effect");
        }
        for job in batch {
            job.answer(outcome.as_ref().map(|_| ()));
        }
    }
}

/// Applies every command of `batch` in one transaction and commits it; a command that
/// fails is taken out and the others applied again without it.
fn commit_batch(
    db: &Database,
    batch: &mut [Box<dyn Job>],
    metrics: &WriterMetrics,
) -> Result<(), StoreError> {
    let mut failed = vec![false; batch.len()];
    'attempt: loop {
        let mut tx = db.begin_write()?;
        for (i, job) in batch.iter_mut().enumerate() {
            if failed[i] || job.apply(&tx) {
                continue;
            }
            failed[i] = true;
            metrics.commands.with_label_values(&["failed"]).inc();
            // What it wrote goes with the transaction; the others are applied again.
            tx.abort()?;
            continue 'attempt;
        }
        let applied = failed.iter().filter(|f| !**f).count();
        if applied == 0 {
            tx.abort()?;
            return Ok(());
        }
        let durable = batch
            .iter()
            .zip(&failed)
            .any(|(job, failed)| !failed && job.durable());
        if !durable {
            tx.set_durability(redb::Durability::None)
                .map_err(|e| StoreError::Storage(e.to_string()))?;
        }
        tx.commit()?;
        metrics.commit(durable).inc();
        metrics
            .commands
            .with_label_values(&["applied"])
            .inc_by(applied as u64);
        metrics.batch.observe(applied as f64);
        return Ok(());
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use redb::TableDefinition;
    use serde::Deserialize;

    use super::*;
    use crate::store::{JsonTable, Store};

    const T: JsonTable = TableDefinition::new("t");

    /// Test commands: write `key`, then do what the variant says.
    #[derive(Serialize, Deserialize)]
    enum Write {
        /// Writes and succeeds.
        Ok(String),
        /// Writes, then refuses: the write must not survive.
        RefuseAfterWriting(String),
        /// Writes, then panics: the write must not survive, the writer must.
        PanicAfterWriting(String),
        /// Holds the writer for a while, so what is submitted meanwhile queues up.
        Slow(String),
        /// A cursor-like write that need not be synced.
        Deferred(String),
    }

    impl Command for Write {
        type Output = String;
        type Error = StoreError;

        fn apply(&self, tx: &WriteTransaction) -> Result<String, StoreError> {
            let key = match self {
                Write::Ok(k)
                | Write::RefuseAfterWriting(k)
                | Write::PanicAfterWriting(k)
                | Write::Slow(k)
                | Write::Deferred(k) => k,
            };
            tx.open_table(T)?.insert(key.as_str(), b"1".as_slice())?;
            match self {
                Write::RefuseAfterWriting(_) => Err(StoreError::Decode("refused".into())),
                Write::PanicAfterWriting(_) => panic!("a bug in a command"),
                Write::Slow(_) => {
                    std::thread::sleep(Duration::from_millis(200));
                    Ok(key.clone())
                }
                _ => Ok(key.clone()),
            }
        }

        fn durability(&self) -> Durability {
            match self {
                Write::Deferred(_) => Durability::Deferred,
                _ => Durability::Immediate,
            }
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("s.redb")).unwrap();
        (dir, store)
    }

    fn has(store: &Store, key: &str) -> bool {
        store.get_json::<u32>(T, key).unwrap().is_some()
    }

    fn count(store: &Store, name: &str, label: &str) -> u64 {
        let families: Vec<_> = store
            .collectors()
            .iter()
            .flat_map(|c| c.collect())
            .collect();
        families
            .iter()
            .filter(|f| f.name() == name)
            .flat_map(|f| f.get_metric())
            .filter(|m| m.get_label().iter().any(|l| l.value() == label))
            .map(|m| m.get_counter().get_value() as u64)
            .sum()
    }

    #[tokio::test]
    async fn commands_waiting_share_one_commit_and_a_failed_one_leaves_the_rest_alone() {
        let (_dir, store) = open();
        // The first command holds the writer; the next ones queue behind it, so the
        // writer takes them as one batch.
        let slow = store.submit(Write::Slow("slow".into()));
        let batch = futures::future::join_all(
            [
                Write::Ok("a".into()),
                Write::RefuseAfterWriting("refused".into()),
                Write::Ok("b".into()),
                Write::PanicAfterWriting("panicked".into()),
                Write::Ok("c".into()),
            ]
            .map(|w| store.submit(w)),
        );
        let (slow, answers) = tokio::join!(slow, batch);
        assert_eq!(slow.unwrap(), "slow");
        let answers: Vec<_> = answers.into_iter().map(|a| a.ok()).collect();
        assert_eq!(
            answers,
            [
                Some("a".into()),
                None,
                Some("b".into()),
                None,
                Some("c".into())
            ],
            "each command gets its own answer"
        );
        for key in ["slow", "a", "b", "c"] {
            assert!(has(&store, key), "{key} is committed");
        }
        assert!(!has(&store, "refused"), "a refused command changes nothing");
        assert!(
            !has(&store, "panicked"),
            "a panicking command changes nothing"
        );
        // The five behind the slow one share one commit (which may be the slow one's,
        // if all six were queued before the writer woke up).
        let commits = count(&store, "svc_store_commits_total", "immediate");
        assert!(commits <= 2, "{commits} commits for 6 commands");
        assert_eq!(count(&store, "svc_store_commands_total", "applied"), 4);
        assert_eq!(count(&store, "svc_store_commands_total", "failed"), 2);

        // The writer lives on after the panic.
        assert_eq!(store.submit(Write::Ok("d".into())).await.unwrap(), "d");
    }

    #[tokio::test]
    async fn a_batch_of_deferred_commands_is_committed_without_a_sync() {
        let (_dir, store) = open();
        store
            .submit(Write::Deferred("cursor".into()))
            .await
            .unwrap();
        assert!(has(&store, "cursor"), "visible once answered");
        assert_eq!(count(&store, "svc_store_commits_total", "deferred"), 1);
        assert_eq!(count(&store, "svc_store_commits_total", "immediate"), 0);
        store.submit(Write::Ok("x".into())).await.unwrap();
        assert_eq!(count(&store, "svc_store_commits_total", "immediate"), 1);
    }

    #[test]
    fn what_was_answered_is_there_after_the_store_is_opened_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("s.redb");
        let store = Store::open(&path).unwrap();
        for i in 0..20 {
            store.submit_blocking(Write::Ok(format!("k{i}"))).unwrap();
        }
        drop(store);
        let store = Store::open(&path).unwrap();
        assert!((0..20).all(|i| has(&store, &format!("k{i}"))));
    }
}

/// What one durable commit costs on this machine's disk: the floor of a write's latency.
/// `cargo test --release -p svc-platform commit_latency -- --ignored --nocapture`
#[cfg(test)]
mod commit_latency {
    use std::time::Instant;

    use super::tests_support::Put;
    use crate::store::Store;

    #[test]
    #[ignore = "a measurement, not a test"]
    fn commit_latency() {
        let dir =
            tempfile::tempdir_in(std::env::var("BENCH_DIR").unwrap_or("/tmp".into())).unwrap();
        let store = Store::open(&dir.path().join("latency.redb")).unwrap();
        for warm in 0..200 {
            store.submit_blocking(Put(format!("warm-{warm}"))).unwrap();
        }
        let n = 500;
        let started = Instant::now();
        for i in 0..n {
            store.submit_blocking(Put(format!("k-{i}"))).unwrap();
        }
        let each = started.elapsed() / n;
        println!("one durable commit of one small command, alone: {each:?}");
    }
}

#[cfg(test)]
mod tests_support {
    use redb::{TableDefinition, WriteTransaction};
    use serde::{Deserialize, Serialize};

    use crate::store::{Command, JsonTable, StoreError};

    const T: JsonTable = TableDefinition::new("t");

    /// Writes one small row.
    #[derive(Serialize, Deserialize)]
    pub struct Put(pub String);

    impl Command for Put {
        type Output = ();
        type Error = StoreError;
        fn apply(&self, tx: &WriteTransaction) -> Result<(), StoreError> {
            tx.open_table(T)?
                .insert(self.0.as_str(), [7u8; 200].as_slice())?;
            Ok(())
        }
    }
}
