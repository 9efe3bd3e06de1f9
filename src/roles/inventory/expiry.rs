//! Expiry: held reservations that are never committed give their stock back.
//!
//! An orders instance that crashes for good would otherwise hold stock forever. The
//! sweep reads the deadline index ([`super::holds`]), so it visits only what is due
//! instead of every reservation ever made.
//!
//! The sweep is a plain function of the store and a time ([`expire_due`]), so tests run
//! it at any "now" without a clock; [`spawn`] runs it on the configured period until
//! shutdown. Each reservation expires by its own command ([`ExpireHold`]) that re-checks
//! it is still held, so a commit racing the sweep wins or loses cleanly, never half-way. A
//! reservation that cannot be expired (a damaged row) is reported and skipped, and never
//! blocks the others.

use std::sync::Arc;
use std::time::Duration;

use redb::WriteTransaction;
use serde::{Deserialize, Serialize};
use tokio::time::MissedTickBehavior;

use super::error::InventoryError;
use super::holds::{self, Hold};
use super::reservations::{self, Reservation, ReservationStatus};
use svc_platform::clock::now_ms;
use svc_platform::shutdown::Shutdown;
use svc_platform::store::{Command, Store, StoreError};

/// Holds read per index scan; bounds memory, not how many expire per sweep.
const BATCH: usize = 500;

/// What one sweep did.
#[derive(Debug, Default)]
pub struct Sweep {
    pub expired: Vec<Reservation>,
    /// Order ids that were due but could not be expired, with why.
    pub failed: Vec<(String, InventoryError)>,
}

/// Expires every held reservation whose deadline is at or before `now_ms`.
pub fn expire_due(store: &Store, now_ms: u64) -> Result<Sweep, StoreError> {
    expire_due_in_batches(store, now_ms, BATCH)
}

/// [`expire_due`], reading the index `batch` holds at a time (small in tests).
pub(super) fn expire_due_in_batches(
    store: &Store,
    now_ms: u64,
    batch: usize,
) -> Result<Sweep, StoreError> {
    let mut sweep = Sweep::default();
    let mut after = None;
    loop {
        let due = holds::due(store, after.as_ref(), now_ms, batch)?;
        for hold in &due {
            let expire = ExpireHold {
                hold: hold.clone(),
                now_ms,
            };
            match store.submit_blocking(expire) {
                Ok(Some(r)) => sweep.expired.push(r),
                Ok(None) => {}
                Err(e) => sweep.failed.push((hold.order_id.clone(), e)),
            }
        }
        if due.len() < batch {
            return Ok(sweep);
        }
        after = due.into_iter().last();
    }
}

/// Expires one hold found by [`holds::due`]. `None` when it is no longer held (committed or
/// released since it was listed) or not yet due: then nothing changes.
#[derive(Debug, Serialize, Deserialize)]
pub struct ExpireHold {
    pub hold: Hold,
    pub now_ms: u64,
}

impl Command for ExpireHold {
    type Output = Option<Reservation>;
    type Error = InventoryError;

    fn apply(&self, tx: &WriteTransaction) -> Result<Option<Reservation>, InventoryError> {
        let hold = &self.hold;
        let stored = reservations::stored(tx, &hold.order_id)?;
        match stored {
            Some(mut r)
                if r.status == ReservationStatus::Held && r.expires_at_ms == hold.expires_at_ms =>
            {
                if r.expires_at_ms > self.now_ms {
                    return Ok(None);
                }
                reservations::end_hold(tx, &mut r, ReservationStatus::Expired)?;
                Ok(Some(r))
            }
            // Ending a hold removes its row, so a row left behind can only come from a
            // damaged file. Drop it so it is not read again.
            _ => {
                holds::remove(tx, hold)?;
                Ok(None)
            }
        }
    }
}

/// Runs [`expire_due`] every `period` until `shutdown`.
pub fn spawn(store: Arc<Store>, period: Duration, shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        // A slow sweep should not be followed by a burst of catch-up sweeps.
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            let store = store.clone();
            match tokio::task::spawn_blocking(move || expire_due(&store, now_ms())).await {
                Ok(Ok(sweep)) => {
                    for r in sweep.expired {
                        tracing::info!(order_id = %r.order_id, "reservation expired; its stock is available again");
                    }
                    for (order_id, error) in sweep.failed {
                        tracing::error!(%order_id, %error, "cannot expire reservation; will retry");
                    }
                }
                Ok(Err(error)) => {
                    tracing::error!(%error, "cannot read due reservations; will retry")
                }
                Err(error) => tracing::error!(%error, "expiry sweep task failed"),
            }
        }
    });
}
