//! Expiry: held reservations that are never committed give their stock back.
//!
//! An orders instance that crashes for good would otherwise hold stock forever. Every
//! held reservation has a row in a deadline index, written and removed (by [`hold`] and
//! [`unhold`]) in the same transaction that starts or ends the hold, so the sweep reads
//! only what is due instead of every reservation ever made.
//!
//! The sweep is a plain function of the store and a time ([`expire_due`]), so tests run
//! it at any "now" without a clock; [`spawn`] runs it on the configured period until
//! shutdown. Each reservation expires in its own write transaction that re-checks it is
//! still held, so a commit racing the sweep wins or loses cleanly, never half-way. A
//! reservation that cannot be expired (a damaged row) is reported and skipped, and never
//! blocks the others.

use std::ops::Bound;
use std::sync::Arc;
use std::time::Duration;

use redb::{TableDefinition, WriteTransaction};
use tokio::time::MissedTickBehavior;

use super::error::InventoryError;
use super::reservations::{self, Reservation, ReservationStatus};
use svc_platform::clock::now_ms;
use svc_platform::shutdown::Shutdown;
use svc_platform::store::{Store, StoreError};

/// `(expires_at_ms, order_id)` of every held reservation, earliest deadline first.
const HOLDS: TableDefinition<(u64, &'static str), ()> = TableDefinition::new("inventory_holds");

/// Holds read per index scan; bounds memory, not how many expire per sweep.
const BATCH: usize = 500;

/// One row of the deadline index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hold {
    pub expires_at_ms: u64,
    pub order_id: String,
}

/// What one sweep did.
#[derive(Debug, Default)]
pub struct Sweep {
    pub expired: Vec<Reservation>,
    /// Order ids that were due but could not be expired, with why.
    pub failed: Vec<(String, InventoryError)>,
}

/// Enters a new hold in the index, inside the caller's transaction.
pub(super) fn hold(tx: &WriteTransaction, r: &Reservation) -> Result<(), StoreError> {
    tx.open_table(HOLDS)?
        .insert((r.expires_at_ms, r.order_id.as_str()), ())?;
    Ok(())
}

/// Removes an ended hold from the index, inside the caller's transaction.
pub(super) fn unhold(tx: &WriteTransaction, r: &Reservation) -> Result<(), StoreError> {
    tx.open_table(HOLDS)?
        .remove((r.expires_at_ms, r.order_id.as_str()))?;
    Ok(())
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
        let due = due(store, after.as_ref(), now_ms, batch)?;
        for hold in &due {
            match expire(store, hold, now_ms) {
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

/// Holds due at `now_ms`, earliest first: at most `limit`, starting after `after` (the
/// last one of the previous call), so failed ones are passed over, not read again.
fn due(
    store: &Store,
    after: Option<&Hold>,
    now_ms: u64,
    limit: usize,
) -> Result<Vec<Hold>, StoreError> {
    let tx = store.db().begin_read()?;
    let holds = match tx.open_table(HOLDS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
        Err(e) => return Err(e.into()),
    };
    let start = after.map_or(Bound::Unbounded, |h| {
        Bound::Excluded((h.expires_at_ms, h.order_id.as_str()))
    });
    // Every key with a deadline up to and including `now_ms` sorts before this one.
    let end = Bound::Excluded((now_ms.saturating_add(1), ""));
    let mut out = Vec::new();
    for row in holds.range::<(u64, &str)>((start, end))?.take(limit) {
        let (key, _) = row?;
        let (expires_at_ms, order_id) = key.value();
        out.push(Hold {
            expires_at_ms,
            order_id: order_id.to_string(),
        });
    }
    Ok(out)
}

/// Expires one hold found by [`due`]. `None` when it is no longer held (committed or
/// released since it was listed) or not yet due: then nothing changes.
fn expire(store: &Store, hold: &Hold, now_ms: u64) -> Result<Option<Reservation>, InventoryError> {
    store.write(|tx| {
        let stored = reservations::stored(tx, &hold.order_id)?;
        match stored {
            Some(mut r)
                if r.status == ReservationStatus::Held && r.expires_at_ms == hold.expires_at_ms =>
            {
                if r.expires_at_ms > now_ms {
                    return Ok(None);
                }
                reservations::end_hold(tx, &mut r, ReservationStatus::Expired)?;
                Ok(Some(r))
            }
            // Ending a hold removes its row, so a row left behind can only come from a
            // damaged file. Drop it so it is not read again.
            _ => {
                tx.open_table(HOLDS)?
                    .remove((hold.expires_at_ms, hold.order_id.as_str()))?;
                Ok(None)
            }
        }
    })
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
