//! Reservations: stock held for one order, then committed (sold) or given back.
//!
//! Guarantees:
//! - Every transition is one command ([`Reserve`], [`CommitReservation`],
//!   [`ReleaseReservation`]) that reads the reservation and the products it touches,
//!   checks, and writes them together. The store applies commands one after another,
//!   so two concurrent reservations can never both take the last unit.
//! - Reserving is all or nothing: an unknown SKU or a short line changes nothing and
//!   leaves no record, so a retry after a restock can succeed.
//! - Every operation is idempotent per order id. A release for an order never reserved
//!   leaves a "released" tombstone, so a reserve that arrives after its compensation
//!   (a retry racing the cancel) gets that tombstone back instead of taking stock.
//! - Units only move between a product's buckets: reserve takes `available` into
//!   `reserved`; commit moves `reserved` to `sold`; release and expiry move `reserved`
//!   back to `available`. The sum of the buckets never changes.
//!
//! Every hold is also entered in the deadline index (`holds`), in the same
//! transaction that starts or ends it.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::error::{InventoryError, Shortage};
use super::holds;
use super::products;
use super::reserve_request::ReserveOrder;
use svc_platform::store::{self, Command, JsonTable, Store, StoreError};

const RESERVATIONS: JsonTable = TableDefinition::new("inventory_reservations");

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ReservationStatus {
    Held,
    Committed,
    Released,
    Expired,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReservedLine {
    pub sku: String,
    pub quantity: u64,
    /// The product's price when the reservation was made; later price changes do not
    /// alter what the order pays.
    pub price_minor: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Reservation {
    pub order_id: String,
    pub status: ReservationStatus,
    pub lines: Vec<ReservedLine>,
    pub total_minor: u64,
    pub created_at_ms: u64,
    pub expires_at_ms: u64,
}

/// What [`reserve`] did: made a new reservation, or found the order's earlier one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reserved {
    Created(Reservation),
    Existing(Reservation),
}

impl Reservation {
    /// A release that arrived before any reserve: holds nothing, blocks a late reserve.
    fn tombstone(order_id: &str, now_ms: u64) -> Reservation {
        Reservation {
            order_id: order_id.to_string(),
            status: ReservationStatus::Released,
            lines: Vec::new(),
            total_minor: 0,
            created_at_ms: now_ms,
            expires_at_ms: now_ms,
        }
    }

    fn is_tombstone(&self) -> bool {
        self.status == ReservationStatus::Released && self.lines.is_empty()
    }

    /// Whether this reservation was made for exactly these lines, in any order.
    fn has_lines(&self, lines: &[(String, u64)]) -> bool {
        let mut stored: Vec<_> = self
            .lines
            .iter()
            .map(|l| (l.sku.as_str(), l.quantity))
            .collect();
        let mut asked: Vec<_> = lines.iter().map(|(s, q)| (s.as_str(), *q)).collect();
        stored.sort_unstable();
        asked.sort_unstable();
        stored == asked
    }
}

/// Holds every line of `order` for `ttl_ms` from `now_ms`, or nothing at all.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reserve {
    pub order: ReserveOrder,
    pub now_ms: u64,
    pub ttl_ms: u64,
}

impl Command for Reserve {
    type Output = Reserved;
    type Error = InventoryError;

    fn apply(&self, tx: &WriteTransaction) -> Result<Reserved, InventoryError> {
        let Reserve {
            order,
            now_ms,
            ttl_ms,
        } = self;
        let (now_ms, ttl_ms) = (*now_ms, *ttl_ms);
        let mut reservations = tx.open_table(RESERVATIONS)?;
        if let Some(existing) = load(&reservations, order.order_id())? {
            // A tombstone is the answer to a reserve that lost the race with its own
            // compensation, whatever lines it carries.
            if existing.is_tombstone() || existing.has_lines(order.lines()) {
                return Ok(Reserved::Existing(existing));
            }
            return Err(InventoryError::DifferentLines(order.order_id().to_string()));
        }

        let mut products = products::open(tx)?;
        // Every product first: an unknown SKU is the answer whatever the stock of others.
        let mut found = Vec::with_capacity(order.lines().len());
        for (sku, quantity) in order.lines() {
            let product = products::load(&products, sku)?
                .ok_or_else(|| InventoryError::UnknownProduct(sku.clone()))?;
            found.push((product, *quantity));
        }
        let shortages: Vec<Shortage> = found
            .iter()
            .filter(|(p, quantity)| p.available < *quantity)
            .map(|(p, quantity)| Shortage {
                sku: p.sku.clone(),
                requested: *quantity,
                available: p.available,
            })
            .collect();
        if !shortages.is_empty() {
            return Err(InventoryError::OutOfStock(shortages));
        }

        let mut lines = Vec::with_capacity(found.len());
        let mut total: u64 = 0;
        for (mut product, quantity) in found {
            total = product
                .price_minor
                .checked_mul(quantity)
                .and_then(|line_total| total.checked_add(line_total))
                .ok_or_else(|| {
                    InventoryError::Invalid("the order's total is too large to represent".into())
                })?;
            product.available -= quantity; // checked above: available >= quantity
            product.reserved = product.reserved.checked_add(quantity).ok_or_else(|| {
                InventoryError::Inconsistent(format!(
                    "reserved units of `{}` overflow",
                    product.sku
                ))
            })?;
            products::save(&mut products, &product)?;
            lines.push(ReservedLine {
                sku: product.sku,
                quantity,
                price_minor: product.price_minor,
            });
        }
        let reservation = Reservation {
            order_id: order.order_id().to_string(),
            status: ReservationStatus::Held,
            lines,
            total_minor: total,
            created_at_ms: now_ms,
            expires_at_ms: now_ms.saturating_add(ttl_ms),
        };
        save(&mut reservations, &reservation)?;
        holds::hold(tx, &reservation)?;
        Ok(Reserved::Created(reservation))
    }
}

/// Turns the held units of the order into sold ones. Committing twice is one commit.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CommitReservation {
    pub order_id: String,
}

impl Command for CommitReservation {
    type Output = Reservation;
    type Error = InventoryError;

    fn apply(&self, tx: &WriteTransaction) -> Result<Reservation, InventoryError> {
        let order_id = self.order_id.as_str();
        let mut reservation = load(&tx.open_table(RESERVATIONS)?, order_id)?
            .ok_or_else(|| InventoryError::UnknownReservation(order_id.to_string()))?;
        match reservation.status {
            ReservationStatus::Held => {
                end_hold(tx, &mut reservation, ReservationStatus::Committed)?;
                Ok(reservation)
            }
            ReservationStatus::Committed => Ok(reservation),
            ReservationStatus::Released | ReservationStatus::Expired => {
                Err(InventoryError::AlreadyReleased {
                    order_id: order_id.to_string(),
                    expired: reservation.status == ReservationStatus::Expired,
                })
            }
        }
    }
}

/// Gives the held units back. Releasing twice, or after expiry, is one release; releasing
/// an order never reserved leaves a tombstone (see the file comment).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReleaseReservation {
    pub order_id: String,
    pub now_ms: u64,
}

impl Command for ReleaseReservation {
    type Output = Reservation;
    type Error = InventoryError;

    fn apply(&self, tx: &WriteTransaction) -> Result<Reservation, InventoryError> {
        let (order_id, now_ms) = (self.order_id.as_str(), self.now_ms);
        let existing = load(&tx.open_table(RESERVATIONS)?, order_id)?;
        let Some(mut reservation) = existing else {
            let tombstone = Reservation::tombstone(order_id, now_ms);
            save(&mut tx.open_table(RESERVATIONS)?, &tombstone)?;
            return Ok(tombstone);
        };
        match reservation.status {
            ReservationStatus::Held => {
                end_hold(tx, &mut reservation, ReservationStatus::Released)?;
                Ok(reservation)
            }
            ReservationStatus::Released | ReservationStatus::Expired => Ok(reservation),
            ReservationStatus::Committed => {
                Err(InventoryError::AlreadyCommitted(order_id.to_string()))
            }
        }
    }
}

/// The commands, submitted and waited for: for tests.
#[cfg(test)]
pub(super) fn reserve(
    store: &Store,
    order: &ReserveOrder,
    now_ms: u64,
    ttl_ms: u64,
) -> Result<Reserved, InventoryError> {
    store.submit_blocking(Reserve {
        order: order.clone(),
        now_ms,
        ttl_ms,
    })
}

#[cfg(test)]
pub(super) fn commit(store: &Store, order_id: &str) -> Result<Reservation, InventoryError> {
    store.submit_blocking(CommitReservation {
        order_id: order_id.to_string(),
    })
}

#[cfg(test)]
pub(super) fn release(
    store: &Store,
    order_id: &str,
    now_ms: u64,
) -> Result<Reservation, InventoryError> {
    store.submit_blocking(ReleaseReservation {
        order_id: order_id.to_string(),
        now_ms,
    })
}

pub fn get_reservation(store: &Store, order_id: &str) -> Result<Option<Reservation>, StoreError> {
    store.get_json(RESERVATIONS, order_id)
}

/// Every reservation (tombstones included), in order id order, optionally of one status.
pub fn list_reservations(
    store: &Store,
    status: Option<ReservationStatus>,
) -> Result<Vec<Reservation>, StoreError> {
    let all: Vec<Reservation> = store.scan_json(RESERVATIONS)?;
    Ok(all
        .into_iter()
        .filter(|r| status.is_none_or(|s| r.status == s))
        .collect())
}

/// Ends a hold: each line's units leave `reserved` for `sold` (committed) or go back to
/// `available` (released, expired); the hold leaves the deadline index.
pub(super) fn end_hold(
    tx: &WriteTransaction,
    reservation: &mut Reservation,
    to: ReservationStatus,
) -> Result<(), InventoryError> {
    let mut products = products::open(tx)?;
    for line in &reservation.lines {
        let inconsistent = |what: &str| {
            InventoryError::Inconsistent(format!(
                "order `{}` holds {} of `{}`, but {what}",
                reservation.order_id, line.quantity, line.sku
            ))
        };
        let mut product = products::load(&products, &line.sku)?
            .ok_or_else(|| inconsistent("the product does not exist"))?;
        product.reserved = product
            .reserved
            .checked_sub(line.quantity)
            .ok_or_else(|| inconsistent("fewer units are reserved"))?;
        let bucket = if to == ReservationStatus::Committed {
            &mut product.sold
        } else {
            &mut product.available
        };
        *bucket = bucket
            .checked_add(line.quantity)
            .ok_or_else(|| inconsistent("the units overflow"))?;
        products::save(&mut products, &product)?;
    }
    holds::unhold(tx, reservation)?;
    reservation.status = to;
    save(&mut tx.open_table(RESERVATIONS)?, reservation)?;
    Ok(())
}

/// The stored reservation of `order_id`, read inside the caller's transaction.
pub(super) fn stored(
    tx: &WriteTransaction,
    order_id: &str,
) -> Result<Option<Reservation>, StoreError> {
    load(&tx.open_table(RESERVATIONS)?, order_id)
}

/// Every held reservation, read inside the caller's transaction.
pub(super) fn held(tx: &WriteTransaction) -> Result<Vec<Reservation>, StoreError> {
    let mut out = Vec::new();
    for row in tx.open_table(RESERVATIONS)?.iter()? {
        let (_, v) = row?;
        let r: Reservation = store::decode(v.value())?;
        if r.status == ReservationStatus::Held {
            out.push(r);
        }
    }
    Ok(out)
}

fn load(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    order_id: &str,
) -> Result<Option<Reservation>, StoreError> {
    match table.get(order_id)? {
        Some(v) => store::decode(v.value()).map(Some),
        None => Ok(None),
    }
}

fn save(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    reservation: &Reservation,
) -> Result<(), StoreError> {
    table.insert(
        reservation.order_id.as_str(),
        store::encode(reservation).as_slice(),
    )?;
    Ok(())
}
