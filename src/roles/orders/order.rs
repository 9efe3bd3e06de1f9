//! The order and its saga state: what is stored, and the rules for moving it on.
//!
//! An order is created `pending` at step `reserve` and only ever moves forward through
//! the steps below, to `confirmed` or (through `compensate`) `cancelled`. The pure
//! function [`Order::after`] says what an outcome of a step does to the order, so every
//! transition is tested without a network.
//!
//! ```text
//! reserve ─held→ authorize ─ok→ commit ─ok→ capture ─ok→ CONFIRMED
//!    └refused─┐     └refused─┐    └refused─┐
//!             └──────────────┴─────────────┴→ compensate ─done→ CANCELLED
//! ```

use serde::{Deserialize, Serialize};
use svc_platform::ids;

use crate::domain::CardNumber;

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: u32 = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Pending,
    Confirmed,
    Cancelled,
}

/// The next thing the saga must do for an order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Step {
    Reserve,
    Authorize,
    Commit,
    Capture,
    Compensate,
    Done,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Line {
    pub sku: String,
    pub quantity: u32,
    /// Unit price, known once inventory has reserved the line.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub price_minor: Option<u64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Order {
    pub id: String,
    pub status: Status,
    pub step: Step,
    pub lines: Vec<Line>,
    pub total_minor: Option<u64>,
    /// The card's last four digits, for a person to tell cards apart. The card itself is
    /// held by payments until the payment is decided; orders never stores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub card_last4: Option<String>,
    /// Payments holds this order's card: the authorization asks it to use that one.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub card_on_file: bool,
    /// A card number stored whole by versions of svc before the card vault: read so
    /// that such an order's authorization still has it, and never written again.
    #[serde(default, rename = "card", skip_serializing)]
    pub legacy_card: Option<String>,
    /// Why the order was cancelled, for a person to read.
    pub reason: Option<String>,
    pub cancel_requested: bool,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
    /// Trace of the request that created the order: every saga call and the final
    /// event continue it, so one trace id covers the whole order.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traceparent: Option<String>,
}

/// The body of `POST /v1/orders`, before validation.
#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewOrder {
    pub lines: Vec<NewLine>,
    #[serde(default)]
    pub card: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct NewLine {
    pub sku: String,
    pub quantity: i64,
}

/// A validated order request: what a handler may pass on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderRequest {
    pub lines: Vec<Line>,
    /// Digits only. Passed to payments' card vault, never stored here.
    pub card: Option<String>,
}

impl OrderRequest {
    /// The last four digits of the card, if there is one.
    pub fn card_last4(&self) -> Option<String> {
        let card = self.card.as_deref()?;
        Some(card[card.len().saturating_sub(4)..].to_string())
    }
}

impl NewOrder {
    pub fn parse(self) -> Result<OrderRequest, String> {
        if self.lines.is_empty() {
            return Err("lines: an order needs at least one line".into());
        }
        if self.lines.len() > MAX_LINES {
            return Err(format!("lines: at most {MAX_LINES} lines per order"));
        }
        let mut lines: Vec<Line> = Vec::with_capacity(self.lines.len());
        for (i, line) in self.lines.into_iter().enumerate() {
            check_id(&line.sku).map_err(|e| format!("lines[{i}].sku: {e}"))?;
            if line.quantity < 1 || line.quantity > i64::from(MAX_QUANTITY) {
                return Err(format!(
                    "lines[{i}].quantity: expected 1 to {MAX_QUANTITY}, got {}",
                    line.quantity
                ));
            }
            if lines.iter().any(|l| l.sku == line.sku) {
                return Err(format!(
                    "lines[{i}].sku: `{}` appears twice; put the total quantity on one line",
                    line.sku
                ));
            }
            lines.push(Line {
                sku: line.sku,
                quantity: line.quantity as u32,
                price_minor: None,
            });
        }
        // The rule payments applies too: a card it would refuse never makes an order.
        let card = self
            .card
            .map(|card| CardNumber::parse(&card).map(CardNumber::into_digits))
            .transpose()
            .map_err(|e| e.to_string())?;
        Ok(OrderRequest { lines, card })
    }
}

/// Ids (order ids, SKUs) travel in URLs: a safe alphabet only.
pub fn check_id(value: &str) -> Result<(), String> {
    ids::check_id("id", value)
}

/// What happened when the saga ran a step.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Inventory holds the stock: unit prices per SKU and the total.
    Reserved {
        prices: Vec<(String, u64)>,
        total_minor: u64,
    },
    /// The step succeeded (authorize, commit, capture, compensate).
    Done,
    /// The peer refused for good; the reason is for a person.
    Refused(String),
}

impl Order {
    pub fn is_final(&self) -> bool {
        self.status != Status::Pending
    }

    /// Whether a customer's cancel can still be honoured. Not once the step is commit:
    /// a commit may be in flight, and stock once committed cannot be released.
    pub fn cancellable(&self) -> bool {
        self.status == Status::Pending && matches!(self.step, Step::Reserve | Step::Authorize)
    }

    /// Whether the saga must store the order, durably, before its next step: when the
    /// next step is the commit (from then on a cancel is refused, and after a crash the
    /// saga must not fall back to a step where a cancel is accepted while stock may be
    /// sold), and when the saga ends (the outcome is answered and its event sent). Any
    /// other step's result is only progress: lost in a crash, the step is run again,
    /// and its callee answers the repeat as it did the first time.
    pub fn must_be_stored(&self) -> bool {
        self.is_final() || self.step == Step::Commit
    }

    /// The step to run next, taking a customer's cancel request into account.
    pub fn next_step(&self) -> Step {
        match self.step {
            Step::Reserve | Step::Authorize if self.cancel_requested => Step::Compensate,
            step => step,
        }
    }

    /// Keeps a cancel request that reached the store while a step ran. If that step was
    /// the authorization, the commit has not been sent yet, so the cancel still wins.
    pub fn with_cancel_request_of(mut self, stored: &Order) -> Order {
        if stored.cancel_requested && !self.cancel_requested {
            self.cancel_requested = true;
            if self.status == Status::Pending && self.step == Step::Commit {
                self.step = Step::Compensate;
            }
        }
        self
    }

    /// The order after `step` ended with `outcome`.
    pub fn after(&self, step: Step, outcome: Outcome, now_ms: u64) -> Order {
        let mut next = self.clone();
        next.updated_at_ms = now_ms;
        match (step, outcome) {
            (Step::Compensate, _) => {
                next.step = Step::Done;
                next.status = Status::Cancelled;
                if next.reason.is_none() {
                    next.reason = Some("cancelled by the customer".into());
                }
            }
            (_, Outcome::Refused(reason)) => {
                next.step = Step::Compensate;
                next.reason = Some(reason);
            }
            (
                Step::Reserve,
                Outcome::Reserved {
                    prices,
                    total_minor,
                },
            ) => {
                for line in &mut next.lines {
                    line.price_minor = prices
                        .iter()
                        .find(|(sku, _)| sku == &line.sku)
                        .map(|(_, p)| *p);
                }
                next.total_minor = Some(total_minor);
                next.step = Step::Authorize;
            }
            (Step::Authorize, _) => next.step = Step::Commit,
            (Step::Commit, _) => next.step = Step::Capture,
            (Step::Capture, _) => {
                next.step = Step::Done;
                next.status = Status::Confirmed;
            }
            (Step::Reserve, Outcome::Done) | (Step::Done, _) => {}
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pending() -> Order {
        Order {
            id: "ord-0-x".into(),
            status: Status::Pending,
            step: Step::Reserve,
            lines: vec![Line {
                sku: "tea".into(),
                quantity: 2,
                price_minor: None,
            }],
            total_minor: None,
            card_last4: None,
            card_on_file: false,
            legacy_card: None,
            reason: None,
            cancel_requested: false,
            created_at_ms: 0,
            updated_at_ms: 0,
            traceparent: None,
        }
    }

    #[test]
    fn happy_path_walks_every_step() {
        let o = pending();
        let o = o.after(
            Step::Reserve,
            Outcome::Reserved {
                prices: vec![("tea".into(), 450)],
                total_minor: 900,
            },
            1,
        );
        assert_eq!((o.step, o.total_minor), (Step::Authorize, Some(900)));
        assert_eq!(o.lines[0].price_minor, Some(450));
        let o = o.after(Step::Authorize, Outcome::Done, 2);
        let o = o.after(Step::Commit, Outcome::Done, 3);
        let o = o.after(Step::Capture, Outcome::Done, 4);
        assert_eq!((o.status, o.step), (Status::Confirmed, Step::Done));
    }

    #[test]
    fn refusal_compensates_then_cancels_with_reason() {
        let o = pending().after(
            Step::Reserve,
            Outcome::Refused("out of stock: tea".into()),
            1,
        );
        assert_eq!(o.step, Step::Compensate);
        let o = o.after(Step::Compensate, Outcome::Done, 2);
        assert_eq!(o.status, Status::Cancelled);
        assert_eq!(o.reason.as_deref(), Some("out of stock: tea"));
    }

    #[test]
    fn cancel_request_is_honoured_only_before_commit() {
        let mut o = pending();
        o.cancel_requested = true;
        assert_eq!(o.next_step(), Step::Compensate);
        o.step = Step::Authorize;
        assert!(o.cancellable());
        assert_eq!(o.next_step(), Step::Compensate);
        o.step = Step::Commit;
        assert!(!o.cancellable());
        assert_eq!(o.next_step(), Step::Commit);
    }

    #[test]
    fn a_cancel_that_arrived_during_authorize_wins_over_the_commit() {
        let mut stored = pending();
        stored.step = Step::Authorize;
        stored.cancel_requested = true;
        let mut authorized = stored.clone();
        authorized.cancel_requested = false;
        let next = authorized
            .after(Step::Authorize, Outcome::Done, 1)
            .with_cancel_request_of(&stored);
        assert_eq!(next.step, Step::Compensate);
        let done = next.after(Step::Compensate, Outcome::Done, 2);
        assert_eq!(done.reason.as_deref(), Some("cancelled by the customer"));
    }

    #[test]
    fn parse_rejects_bad_orders() {
        let line = |sku: &str, q: i64| NewLine {
            sku: sku.into(),
            quantity: q,
        };
        let parse = |lines: Vec<NewLine>| NewOrder { lines, card: None }.parse();
        assert!(parse(vec![line("tea", 1)]).is_ok());
        assert!(parse(vec![]).is_err());
        assert!(parse(vec![line("tea", 0)]).is_err());
        assert!(parse(vec![line("tea", -3)]).is_err());
        assert!(parse(vec![line("tea", 1_000_000)]).is_err());
        assert!(parse(vec![line("tea", 1), line("tea", 2)]).is_err());
        assert!(parse(vec![line("te a", 1)]).is_err());
        assert!(parse((0..51).map(|i| line(&format!("s{i}"), 1)).collect()).is_err());
    }

    /// Issue 13: a card of 20 to 32 digits made an order that payments then refused.
    #[test]
    fn a_card_payments_would_refuse_is_no_order() {
        let with_card = |card: &str| {
            let lines = vec![NewLine {
                sku: "tea".into(),
                quantity: 1,
            }];
            let card = Some(card.to_string());
            NewOrder { lines, card }.parse()
        };
        for digits in [11, 20, 32] {
            assert!(with_card(&"4".repeat(digits)).is_err(), "{digits} digits");
        }
        let ok = with_card("4242 4242-4242 4242").unwrap();
        assert_eq!(ok.card.as_deref(), Some("4242424242424242"));
    }
}
