//! Every change of a payment: authorize, capture, void. Plain Rust over the redb file.
//!
//! Guarantees:
//! - Each change is one command ([`Authorize`], [`Capture`], [`Void`]) that reads the
//!   payment, checks, writes the payment and appends its ledger entry in one write
//!   transaction, so the ledger and the payment rows never disagree
//!   and two concurrent requests for one order cannot both act.
//! - Each operation is idempotent per order id: repeating it answers the same payment
//!   and writes nothing (no second ledger entry).
//! - A void for an order never authorized leaves a voided tombstone (amount 0), so an
//!   authorize that arrives after its compensation is refused instead of holding money.
//! - Authorize and void decide the payment, so each forgets the order's held card (see
//!   [`card_vault`](super::card_vault)) in its own commit.

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::card_vault;
use super::error::PaymentError;
use super::ledger::{self, EntryKind};
use super::payment::{Authorization, Payment, PaymentStatus};
use svc_platform::store::{self, Command, JsonTable, Store, StoreError};

const PAYMENTS: JsonTable = TableDefinition::new("payments");

/// What [`authorize`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Authorized {
    /// A new authorization.
    Created(Payment),
    /// The order's earlier authorization (possibly since captured).
    Existing(Payment),
    /// Declined, now or before; `reason` says why.
    Declined(Payment),
}

/// Authorizes the amount for the order, or records that it was declined. Whether it is
/// declined is decided before (by the card check), so the command holds no card data.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Authorize {
    pub order_id: String,
    pub amount_minor: u64,
    /// Why it is declined; `None`: authorized.
    pub declined: Option<String>,
    pub now_ms: u64,
}

impl Authorize {
    /// The command for `auth`, with the decline decided by `decline_above_minor`.
    pub fn new(
        order_id: String,
        auth: &Authorization,
        decline_above_minor: u64,
        now_ms: u64,
    ) -> Authorize {
        Authorize {
            order_id,
            amount_minor: auth.amount_minor,
            declined: auth.decline_reason(decline_above_minor),
            now_ms,
        }
    }
}

impl Command for Authorize {
    type Output = Authorized;
    type Error = PaymentError;

    fn apply(&self, tx: &WriteTransaction) -> Result<Authorized, PaymentError> {
        let (order_id, now_ms) = (self.order_id.as_str(), self.now_ms);
        card_vault::forget(tx, order_id)?;
        let mut payments = tx.open_table(PAYMENTS)?;
        if let Some(existing) = load(&payments, order_id)? {
            // Checked before the amount: a tombstone's amount (0) means nothing.
            if existing.status == PaymentStatus::Voided {
                return Err(PaymentError::Voided(order_id.to_string()));
            }
            if existing.amount_minor != self.amount_minor {
                return Err(PaymentError::DifferentAmount {
                    order_id: order_id.to_string(),
                    stored_minor: existing.amount_minor,
                    asked_minor: self.amount_minor,
                });
            }
            return Ok(match existing.status {
                PaymentStatus::Declined => Authorized::Declined(existing),
                _ => Authorized::Existing(existing),
            });
        }
        let reason = self.declined.clone();
        let (status, kind) = match reason {
            Some(_) => (PaymentStatus::Declined, EntryKind::Decline),
            None => (PaymentStatus::Authorized, EntryKind::Authorize),
        };
        let payment = Payment {
            order_id: order_id.to_string(),
            amount_minor: self.amount_minor,
            status,
            reason,
            updated_at_ms: now_ms,
        };
        save(&mut payments, &payment)?;
        ledger::append(tx, order_id, kind, payment.amount_minor, now_ms)?;
        Ok(match status {
            PaymentStatus::Declined => Authorized::Declined(payment),
            _ => Authorized::Created(payment),
        })
    }
}

/// Takes the authorized money. Capturing twice is one capture.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Capture {
    pub order_id: String,
    pub now_ms: u64,
}

impl Command for Capture {
    type Output = Payment;
    type Error = PaymentError;

    fn apply(&self, tx: &WriteTransaction) -> Result<Payment, PaymentError> {
        let (order_id, now_ms) = (self.order_id.as_str(), self.now_ms);
        let mut payments = tx.open_table(PAYMENTS)?;
        let mut payment = load(&payments, order_id)?
            .ok_or_else(|| PaymentError::UnknownPayment(order_id.to_string()))?;
        match payment.status {
            PaymentStatus::Authorized => {
                payment.status = PaymentStatus::Captured;
                payment.updated_at_ms = now_ms;
                save(&mut payments, &payment)?;
                ledger::append(
                    tx,
                    order_id,
                    EntryKind::Capture,
                    payment.amount_minor,
                    now_ms,
                )?;
                Ok(payment)
            }
            PaymentStatus::Captured => Ok(payment),
            PaymentStatus::Voided => Err(PaymentError::Voided(order_id.to_string())),
            PaymentStatus::Declined => Err(PaymentError::Declined {
                order_id: order_id.to_string(),
                reason: payment.reason.unwrap_or_else(|| "declined".into()),
            }),
        }
    }
}

/// Lets the authorized money go. Voiding twice, or voiding a declined payment, changes
/// nothing; voiding an order never authorized leaves a tombstone (see the file comment).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Void {
    pub order_id: String,
    pub now_ms: u64,
}

impl Command for Void {
    type Output = Payment;
    type Error = PaymentError;

    fn apply(&self, tx: &WriteTransaction) -> Result<Payment, PaymentError> {
        let (order_id, now_ms) = (self.order_id.as_str(), self.now_ms);
        card_vault::forget(tx, order_id)?;
        let mut payments = tx.open_table(PAYMENTS)?;
        let existing = load(&payments, order_id)?;
        let Some(mut payment) = existing else {
            let tombstone = Payment {
                order_id: order_id.to_string(),
                amount_minor: 0,
                status: PaymentStatus::Voided,
                reason: None,
                updated_at_ms: now_ms,
            };
            save(&mut payments, &tombstone)?;
            ledger::append(tx, order_id, EntryKind::Void, 0, now_ms)?;
            return Ok(tombstone);
        };
        match payment.status {
            PaymentStatus::Authorized => {
                payment.status = PaymentStatus::Voided;
                payment.updated_at_ms = now_ms;
                save(&mut payments, &payment)?;
                ledger::append(tx, order_id, EntryKind::Void, payment.amount_minor, now_ms)?;
                Ok(payment)
            }
            PaymentStatus::Voided | PaymentStatus::Declined => Ok(payment),
            PaymentStatus::Captured => Err(PaymentError::AlreadyCaptured(order_id.to_string())),
        }
    }
}

/// The commands, submitted and waited for: for tests.
#[cfg(test)]
pub(super) fn authorize(
    store: &Store,
    order_id: &str,
    auth: &Authorization,
    decline_above_minor: u64,
    now_ms: u64,
) -> Result<Authorized, PaymentError> {
    store.submit_blocking(Authorize::new(
        order_id.to_string(),
        auth,
        decline_above_minor,
        now_ms,
    ))
}

#[cfg(test)]
pub(super) fn capture(store: &Store, order_id: &str, now_ms: u64) -> Result<Payment, PaymentError> {
    store.submit_blocking(Capture {
        order_id: order_id.to_string(),
        now_ms,
    })
}

#[cfg(test)]
pub(super) fn void(store: &Store, order_id: &str, now_ms: u64) -> Result<Payment, PaymentError> {
    store.submit_blocking(Void {
        order_id: order_id.to_string(),
        now_ms,
    })
}

pub fn get_payment(store: &Store, order_id: &str) -> Result<Option<Payment>, StoreError> {
    store.get_json(PAYMENTS, order_id)
}

/// Every payment (tombstones included), in order id order.
pub fn list_payments(store: &Store) -> Result<Vec<Payment>, StoreError> {
    store.scan_json(PAYMENTS)
}

fn load(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    order_id: &str,
) -> Result<Option<Payment>, StoreError> {
    match table.get(order_id)? {
        Some(v) => store::decode(v.value()).map(Some),
        None => Ok(None),
    }
}

fn save(
    table: &mut Table<'_, &'static str, &'static [u8]>,
    payment: &Payment,
) -> Result<(), StoreError> {
    table.insert(payment.order_id.as_str(), store::encode(payment).as_slice())?;
    Ok(())
}
