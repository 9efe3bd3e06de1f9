//! The ledger: an append-only record of every change to every payment.
//!
//! Entries are keyed by a sequence number that only grows, and are appended only by
//! [`append`], inside the same write transaction as the payment change they record, so
//! the ledger holds an entry if and only if the change happened. Nothing rewrites or
//! deletes an entry. The totals in [`Ledger`] are recomputed from the entries alone, so
//! comparing them with the payment rows checks that the two agree.

use std::collections::BTreeMap;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::error::PaymentError;
use svc_platform::store::{self, Store, StoreError};

const LEDGER: TableDefinition<u64, &[u8]> = TableDefinition::new("payments_ledger");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Authorize,
    Capture,
    Void,
    Decline,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LedgerEntry {
    pub seq: u64,
    pub order_id: String,
    pub kind: EntryKind,
    pub amount_minor: u64,
    pub at_ms: u64,
}

/// The whole ledger and the totals recomputed from it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ledger {
    pub entries: Vec<LedgerEntry>,
    /// Sum of every capture.
    pub captured_total_minor: u64,
    /// Sum of authorizations neither captured nor voided yet.
    pub authorized_open_minor: u64,
}

/// Appends one entry inside the caller's transaction and returns it.
pub(super) fn append(
    tx: &WriteTransaction,
    order_id: &str,
    kind: EntryKind,
    amount_minor: u64,
    at_ms: u64,
) -> Result<LedgerEntry, PaymentError> {
    let mut table = tx.open_table(LEDGER)?;
    let last = table.last()?.map(|(k, _)| k.value()).unwrap_or(0);
    let seq = last
        .checked_add(1)
        .ok_or_else(|| PaymentError::Inconsistent("the ledger sequence is exhausted".into()))?;
    let entry = LedgerEntry {
        seq,
        order_id: order_id.to_string(),
        kind,
        amount_minor,
        at_ms,
    };
    table.insert(seq, store::encode(&entry).as_slice())?;
    Ok(entry)
}

/// Every entry in sequence order, with the totals they add up to.
pub fn read(store: &Store) -> Result<Ledger, PaymentError> {
    let entries = entries(store)?;
    let (captured_total_minor, authorized_open_minor) = totals(&entries)?;
    Ok(Ledger {
        entries,
        captured_total_minor,
        authorized_open_minor,
    })
}

fn entries(store: &Store) -> Result<Vec<LedgerEntry>, StoreError> {
    store.scan_json(LEDGER)
}

/// `(captured, open)`: replays the entries, tracking each order's open authorization.
pub fn totals(entries: &[LedgerEntry]) -> Result<(u64, u64), PaymentError> {
    let overflow = || PaymentError::Inconsistent("ledger totals overflow".into());
    let mut open: BTreeMap<&str, u64> = BTreeMap::new();
    let mut captured: u64 = 0;
    for e in entries {
        match e.kind {
            EntryKind::Authorize => {
                open.insert(&e.order_id, e.amount_minor);
            }
            EntryKind::Capture => {
                open.remove(e.order_id.as_str());
                captured = captured.checked_add(e.amount_minor).ok_or_else(overflow)?;
            }
            EntryKind::Void => {
                open.remove(e.order_id.as_str());
            }
            EntryKind::Decline => {}
        }
    }
    let open = open
        .values()
        .try_fold(0u64, |sum, v| sum.checked_add(*v))
        .ok_or_else(overflow)?;
    Ok((captured, open))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(seq: u64, order_id: &str, kind: EntryKind, amount_minor: u64) -> LedgerEntry {
        LedgerEntry {
            seq,
            order_id: order_id.into(),
            kind,
            amount_minor,
            at_ms: 0,
        }
    }

    #[test]
    fn totals_replay_each_order() {
        use EntryKind::*;
        let entries = [
            entry(1, "a", Authorize, 100),
            entry(2, "b", Authorize, 50),
            entry(3, "c", Decline, 9_999_999),
            entry(4, "a", Capture, 100),
            entry(5, "d", Authorize, 7),
            entry(6, "d", Void, 7),
            entry(7, "e", Void, 0),
        ];
        assert_eq!(totals(&entries).unwrap(), (100, 50));
        assert_eq!(totals(&[]).unwrap(), (0, 0));
    }

    /// Authorizes then captures 5 for order `a`.
    #[derive(Serialize, Deserialize)]
    struct AuthorizeAndCapture;

    impl svc_platform::store::Command for AuthorizeAndCapture {
        type Output = (LedgerEntry, LedgerEntry);
        type Error = PaymentError;
        fn apply(&self, tx: &WriteTransaction) -> Result<Self::Output, PaymentError> {
            let a = append(tx, "a", EntryKind::Authorize, 5, 1)?;
            let b = append(tx, "a", EntryKind::Capture, 5, 2)?;
            Ok((a, b))
        }
    }

    #[test]
    fn append_numbers_entries_from_one() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.redb")).unwrap();
        assert_eq!(read(&store).unwrap().entries, vec![]);
        let (a, b) = store.submit_blocking(AuthorizeAndCapture).unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        let ledger = read(&store).unwrap();
        assert_eq!(ledger.entries, vec![a, b]);
        assert_eq!(
            (ledger.captured_total_minor, ledger.authorized_open_minor),
            (5, 0)
        );
    }
}
