//! The deadline index of held reservations: one row `(expires_at_ms, order_id)` per
//! hold, earliest first.
//!
//! A row is written and removed (by [`hold`] and [`unhold`]) in the same transaction that
//! starts or ends the hold, so the index never disagrees with the reservations; the
//! expiry sweep reads only the rows that are due ([`due`]).
//!
//! The index was `inventory_holds` until redb 4, whose encoding of such tuple keys
//! differs from redb 2's; a file upgraded from redb 2 still has that table, unreadable
//! now. [`RebuildIndex`], run at start-up, drops it and rebuilds the index from the
//! held reservations.

use std::ops::Bound;

use redb::{TableDefinition, TableHandle, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::error::InventoryError;
use super::reservations::{self, Reservation};
use svc_platform::store::{Command, Store, StoreError};

/// `(expires_at_ms, order_id)` of every held reservation, earliest deadline first.
const HOLDS: TableDefinition<(u64, &'static str), ()> =
    TableDefinition::new("inventory_hold_deadlines");
/// The index as redb 2 encoded it; only ever deleted.
const HOLDS_REDB2: &str = "inventory_holds";

/// Drops the index a redb 2 file carried and rebuilds it from the held reservations.
/// Returns how many holds it entered; 0, changing nothing, on any other file.
#[derive(Debug, Serialize, Deserialize)]
pub struct RebuildIndex;

impl Command for RebuildIndex {
    type Output = usize;
    type Error = InventoryError;

    fn apply(&self, tx: &WriteTransaction) -> Result<usize, InventoryError> {
        let old = tx.list_tables()?.find(|t| t.name() == HOLDS_REDB2);
        let Some(old) = old else { return Ok(0) };
        tx.delete_table(old)?;
        let held = reservations::held(tx)?;
        for r in &held {
            hold(tx, r)?;
        }
        Ok(held.len())
    }
}

/// One row of the deadline index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Hold {
    pub expires_at_ms: u64,
    pub order_id: String,
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

/// Holds due at `now_ms`, earliest first: at most `limit`, starting after `after` (the
/// last one of the previous call), so failed ones are passed over, not read again.
pub(super) fn due(
    store: &Store,
    after: Option<&Hold>,
    now_ms: u64,
    limit: usize,
) -> Result<Vec<Hold>, StoreError> {
    let tx = store.begin_read()?;
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

/// Drops a row that no held reservation stands behind (only a damaged file has one).
pub(super) fn remove(tx: &WriteTransaction, hold: &Hold) -> Result<(), StoreError> {
    tx.open_table(HOLDS)?
        .remove((hold.expires_at_ms, hold.order_id.as_str()))?;
    Ok(())
}
