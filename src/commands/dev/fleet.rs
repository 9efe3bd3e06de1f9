//! Every supervised child of `svc dev`, and the order in which they stop.
//!
//! Guarantees: the other roles stop first (in parallel), the registry last, so each
//! instance can still deregister while it drains; `stop` returns only once every child
//! has exited. A stop signal arriving during the stop turns it into SIGKILL for all.

use std::pin::pin;

use futures::future::join_all;

use super::child::{Stop, Supervisor};
use super::console;
use super::signals::StopSignals;

#[derive(Default)]
pub struct Fleet {
    pub registry: Vec<Supervisor>,
    pub others: Vec<Supervisor>,
}

impl Fleet {
    pub async fn stop(self, signals: &mut StopSignals) {
        let mut urgency = Stop::Orderly;
        for group in [self.others, self.registry] {
            urgency = stop_group(group, urgency, signals).await;
        }
    }
}

/// Stops one group; returns the urgency for the next (urgent once a signal came).
async fn stop_group(group: Vec<Supervisor>, urgency: Stop, signals: &mut StopSignals) -> Stop {
    let (stops, tasks): (Vec<_>, Vec<_>) = group.into_iter().map(|s| (s.stop, s.task)).unzip();
    for stop in &stops {
        stop.send_replace(urgency);
    }
    let mut all = pin!(join_all(tasks));
    if urgency == Stop::Orderly {
        tokio::select! {
            _ = &mut all => return urgency,
            signal = signals.recv() => {
                console::note(format!("{signal} again: killing every child now"));
                for stop in &stops {
                    stop.send_replace(Stop::Now);
                }
            }
        }
    }
    // A supervisor that panicked has dropped its process, which kills it.
    let _ = all.await;
    Stop::Now
}
