//! SIGHUP, the reload signal, handled once per process: the signal task tells systemd
//! `RELOADING=1` (with `MONOTONIC_USEC`), asks every watcher of the process
//! ([`ReloadHub`]) to reload everything, waits until each has, then tells systemd
//! `READY=1`. So `systemctl reload` (the unit is `Type=notify-reload`, or sends SIGHUP
//! from `ExecReload`) returns when the reload is done, not when the signal was sent.
//!
//! A signal is process-wide, so one task listens and the watchers (TLS material in the
//! platform, API keys in the gateway) join the hub instead of each catching it. The
//! handler is installed before the instance is ready: SIGHUP's default action, ending
//! the process, must never be what a reload does.

use std::sync::Arc;

use parking_lot::Mutex;
use tokio::signal::unix::{signal, SignalKind};
use tokio::sync::{mpsc, oneshot};

use crate::shutdown::Shutdown;
use crate::systemd::Notifier;

/// A request to reload everything now, answered once done.
pub(super) type ReloadRequest = oneshot::Sender<()>;

/// Every watcher of the process, so one SIGHUP reloads them all and waits for them.
#[derive(Clone, Default)]
pub struct ReloadHub {
    watchers: Arc<Mutex<Vec<mpsc::UnboundedSender<ReloadRequest>>>>,
}

impl ReloadHub {
    /// A new watcher's end: it receives a request per SIGHUP and answers when done.
    pub(super) fn join(&self) -> mpsc::UnboundedReceiver<ReloadRequest> {
        let (tx, rx) = mpsc::unbounded_channel();
        self.watchers.lock().push(tx);
        rx
    }

    /// Asks every watcher to reload everything and waits until each has answered (a
    /// watcher that stopped counts as done). Returns how many reloaded.
    pub async fn reload_all(&self) -> usize {
        let pending: Vec<oneshot::Receiver<()>> = {
            let mut watchers = self.watchers.lock();
            watchers.retain(|w| !w.is_closed());
            watchers
                .iter()
                .filter_map(|w| {
                    let (done, answered) = oneshot::channel();
                    w.send(done).ok().map(|()| answered)
                })
                .collect()
        };
        let answers = futures::future::join_all(pending).await;
        answers.iter().filter(|a| a.is_ok()).count()
    }
}

/// Catches SIGHUP from now on and, for each, reloads every watcher of `hub` between
/// `RELOADING=1` and `READY=1` (sent only once the instance was ready; see
/// [`Notifier`]), until `shutdown`.
pub(crate) fn spawn(hub: ReloadHub, notifier: Notifier, shutdown: Shutdown) {
    let mut hangup = match signal(SignalKind::hangup()) {
        Ok(s) => s,
        Err(e) => {
            tracing::warn!(error = %e, "cannot catch SIGHUP; files reload on change only");
            return;
        }
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.wait() => return,
                received = hangup.recv() => if received.is_none() { return },
            }
            notifier.reloading();
            let reloaded = hub.reload_all().await;
            tracing::info!(watchers = reloaded, "SIGHUP: reload done");
            notifier.reloaded("serving; reloaded on SIGHUP");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn reload_all_waits_for_every_watcher_and_skips_stopped_ones() {
        let hub = ReloadHub::default();
        let mut first = hub.join();
        let mut second = hub.join();
        drop(hub.join());
        let answered = tokio::spawn(async move {
            for rx in [&mut first, &mut second] {
                rx.recv().await.unwrap().send(()).unwrap();
            }
            (first, second)
        });
        assert_eq!(hub.reload_all().await, 2);
        let (first, second) = answered.await.unwrap();
        drop(first);
        drop(second);
        assert_eq!(hub.reload_all().await, 0, "stopped watchers count as done");
    }
}
