//! Everything a payments operation can refuse, as one typed error.
//!
//! Each message is the `detail` of the problem the HTTP layer answers with (see
//! `http.rs` for the status of each). A decline is not here: it is a stored outcome,
//! not a refusal of the request (see `transitions::Authorized`).

use svc_platform::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum PaymentError {
    /// A value in the request is out of bounds or malformed.
    #[error("{0}")]
    Invalid(String),
    #[error("no payment for order `{0}`")]
    UnknownPayment(String),
    #[error("payment for order `{0}` was voided")]
    Voided(String),
    #[error("payment for order `{order_id}` was {reason}")]
    Declined { order_id: String, reason: String },
    #[error("payment for order `{0}` was already captured")]
    AlreadyCaptured(String),
    #[error("payment for order `{order_id}` was authorized for {stored_minor}, not {asked_minor}")]
    DifferentAmount {
        order_id: String,
        stored_minor: u64,
        asked_minor: u64,
    },
    /// Stored rows contradict each other; a bug or a damaged file, never user input.
    #[error("stored payments are inconsistent: {0}")]
    Inconsistent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

svc_platform::store::redb_errors_into!(PaymentError);
