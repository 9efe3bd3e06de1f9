//! Handing an order's card to payments before the order is written: orders never keeps
//! a card number (only its last four digits), so the card goes to payments' card vault,
//! on the payments shard of the order, and the authorization later uses it from there.
//!
//! The hold comes before the order is stored: a stored order with `card_on_file` always
//! has its card held (until the hold expires), and a hold whose order never got stored
//! just expires.

use svc_platform::client::{Call, ServiceClient};
use svc_platform::shards::ShardCounts;

use super::placement::{payments_shard, PAYMENTS};

/// Why a card could not be handed over; nothing was written in orders.
#[derive(Debug, thiserror::Error)]
pub enum CardHoldError {
    /// Payments refused the card itself (the same rule orders checks first).
    #[error("card: {0}")]
    Refused(String),
    /// Payments could not take it; worth trying again shortly.
    #[error("{0}")]
    Unavailable(String),
}

/// Where an order's card is held: payments in the service ([`PaymentsCardVault`]), a
/// list in tests.
pub trait CardVault {
    async fn hold(&self, order_id: &str, card: &str) -> Result<(), CardHoldError>;
}

/// Holds cards at the payments shard owning each order.
pub struct PaymentsCardVault<'a> {
    pub client: &'a ServiceClient,
    pub shards: &'a ShardCounts,
}

impl CardVault for PaymentsCardVault<'_> {
    async fn hold(&self, order_id: &str, card: &str) -> Result<(), CardHoldError> {
        let body = serde_json::json!({ "card": card });
        // Holding the same card twice holds it once.
        let call = Call::put(format!("/v1/payments/{order_id}/card"))
            .json(&body)
            .shard(payments_shard(order_id, self.shards))
            .idempotent();
        match self.client.call(PAYMENTS, call).await {
            Ok(r) if r.is_success() => Ok(()),
            Ok(r) if r.status == 400 => Err(CardHoldError::Refused(r.problem_detail())),
            Ok(r) => Err(CardHoldError::Unavailable(format!(
                "payments could not take the card ({})",
                r.status
            ))),
            Err(e) => Err(CardHoldError::Unavailable(format!(
                "payments is not available to take the card: {e}"
            ))),
        }
    }
}
