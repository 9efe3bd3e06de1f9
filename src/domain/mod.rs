//! Values of the shop's domain that more than one role reads, each parsed by one rule.
//!
//! A role that takes one of these from a request parses it here, so the gateway, orders
//! and payments can never disagree on what is valid (a card orders accepts and payments
//! refuses would be an order created only to be cancelled). Each type is made only by
//! its `parse`: a value of it is valid, and the error says what was expected.

pub mod card;
pub mod idempotency_key;

pub use card::{CardNumber, InvalidCard};
pub use idempotency_key::{IdempotencyKey, InvalidIdempotencyKey};
