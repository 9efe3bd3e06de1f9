//! A payment and the rules that decide it, with no storage: what one order's payment
//! looks like, what an authorize request must contain, and when it is declined.
//!
//! An [`AuthorizeRequest`] is parsed once at the edge into an [`Authorization`], so an
//! out-of-range amount or a malformed card never reaches the store; the card by the
//! rule orders applies when the order is placed ([`CardNumber`]). The card number is
//! used only to decide a decline; it is kept (sealed) only in the card vault, until the
//! payment is decided.

use serde::{Deserialize, Serialize};

use super::error::PaymentError;
use svc_platform::ids;

use crate::domain::CardNumber;

pub const MAX_AMOUNT_MINOR: u64 = 1_000_000_000_000;
/// The card number that is always declined, to exercise the compensation path.
pub const DECLINED_TEST_CARD: &str = "4000000000000002";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PaymentStatus {
    Authorized,
    Captured,
    Voided,
    Declined,
}

/// The payment of one order. At most one per order id.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payment {
    pub order_id: String,
    pub amount_minor: u64,
    pub status: PaymentStatus,
    /// Why it was declined; only on declined payments.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    pub updated_at_ms: u64,
}

/// The body of an authorize request, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthorizeRequest {
    pub amount_minor: u64,
    /// A card given with the request (callers that hold none in the vault).
    #[serde(default)]
    pub card: Option<String>,
    /// The card is the one held for this order in the card vault.
    #[serde(default)]
    pub card_on_file: bool,
}

/// An authorize request that passed every check.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Authorization {
    pub amount_minor: u64,
    /// Digits only.
    card: Option<String>,
    /// The card is to be taken from the card vault (see [`Authorization::with_card`]).
    pub card_on_file: bool,
}

/// Order ids travel in URLs and name rows: a safe alphabet only.
pub fn check_order_id(id: &str) -> Result<(), PaymentError> {
    ids::check_id("order_id", id).map_err(PaymentError::Invalid)
}

impl AuthorizeRequest {
    pub fn parse(self) -> Result<Authorization, PaymentError> {
        if !(1..=MAX_AMOUNT_MINOR).contains(&self.amount_minor) {
            return Err(PaymentError::Invalid(format!(
                "amount_minor: expected 1 to {MAX_AMOUNT_MINOR}"
            )));
        }
        let card = self
            .card
            .map(|card| CardNumber::parse(&card).map(CardNumber::into_digits))
            .transpose()
            .map_err(|e| PaymentError::Invalid(e.to_string()))?;
        if card.is_some() && self.card_on_file {
            return Err(PaymentError::Invalid(
                "card: give a card or card_on_file, not both".into(),
            ));
        }
        Ok(Authorization {
            amount_minor: self.amount_minor,
            card,
            card_on_file: self.card_on_file,
        })
    }
}

impl Authorization {
    /// This authorization with the card found in the vault (`None`: none is held).
    pub fn with_card(mut self, card: Option<String>) -> Authorization {
        self.card = card;
        self
    }

    /// Why this authorization is declined, if it is. Deterministic, so tests and the
    /// order flow can make a payment fail on purpose.
    pub fn decline_reason(&self, limit_minor: u64) -> Option<String> {
        if self.amount_minor > limit_minor {
            return Some(format!(
                "declined: amount {} exceeds the limit of {limit_minor}",
                self.amount_minor
            ));
        }
        if self.card_on_file && self.card.is_none() {
            return Some("declined: the card is no longer held; place the order again".into());
        }
        if self.card.as_deref() == Some(DECLINED_TEST_CARD) {
            // The reason is stored and shown: never the card number, only its end.
            return Some(format!(
                "declined: test card ending {}",
                &DECLINED_TEST_CARD[DECLINED_TEST_CARD.len() - 4..]
            ));
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(amount: u64, card: Option<&str>) -> Result<Authorization, PaymentError> {
        AuthorizeRequest {
            amount_minor: amount,
            card: card.map(String::from),
            card_on_file: false,
        }
        .parse()
    }

    #[test]
    fn amounts_and_cards_are_checked() {
        assert!(auth(1, None).is_ok());
        assert!(auth(MAX_AMOUNT_MINOR, None).is_ok());
        assert!(auth(0, None).is_err());
        assert!(auth(MAX_AMOUNT_MINOR + 1, None).is_err());
        assert!(auth(5, Some("4242 4242-4242 4242")).is_ok());
        assert!(auth(5, Some("4242")).is_err());
        assert!(auth(5, Some("4242x4242x4242x4242")).is_err());
        assert!(auth(5, Some(&"4".repeat(20))).is_err());
    }

    #[test]
    fn declines_are_deterministic() {
        assert_eq!(
            auth(1_000_000, None).unwrap().decline_reason(1_000_000),
            None
        );
        assert_eq!(
            auth(1_500_000, None)
                .unwrap()
                .decline_reason(1_000_000)
                .as_deref(),
            Some("declined: amount 1500000 exceeds the limit of 1000000")
        );
        assert_eq!(
            auth(5, Some("4000 0000 0000 0002"))
                .unwrap()
                .decline_reason(1_000_000)
                .as_deref(),
            Some("declined: test card ending 0002")
        );
        assert_eq!(
            auth(5, Some("4242424242424242"))
                .unwrap()
                .decline_reason(1_000_000),
            None
        );
        let on_file = AuthorizeRequest {
            amount_minor: 5,
            card: None,
            card_on_file: true,
        }
        .parse()
        .unwrap();
        let reason = on_file.clone().with_card(None).decline_reason(1_000_000);
        assert!(reason.unwrap().contains("no longer held"));
        let held = on_file.with_card(Some("4242424242424242".into()));
        assert_eq!(held.decline_reason(1_000_000), None);
    }

    #[test]
    fn order_ids_are_checked() {
        assert!(check_order_id("ord-0-01HZ.x_y").is_ok());
        assert!(check_order_id("").is_err());
        assert!(check_order_id("a/b").is_err());
        assert!(check_order_id(&"a".repeat(65)).is_err());
    }
}
