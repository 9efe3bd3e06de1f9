//! The order as the public API shows it: exactly the fields of the `Order` schema in the
//! gateway's `openapi.json`, and nothing else.
//!
//! The stored [`Order`] also holds what clients need not see (the card's last digits) and
//! what is internal (the trace context that the saga continues). The view names each
//! public field, so a field added to the stored order stays private until someone adds
//! it here, and to the schema, on purpose.

use serde::Serialize;

use super::order::{Line, Order, Status, Step};

/// An order in every answer of the orders API.
#[derive(Debug, Serialize)]
pub struct OrderView<'a> {
    pub id: &'a str,
    pub status: Status,
    pub step: Step,
    pub lines: Vec<LineView<'a>>,
    pub total_minor: Option<u64>,
    /// Why the order was cancelled, for a person to read.
    pub reason: Option<&'a str>,
    pub cancel_requested: bool,
    pub created_at_ms: u64,
    pub updated_at_ms: u64,
}

/// One line of an order; its unit price once inventory has reserved it.
#[derive(Debug, Serialize)]
pub struct LineView<'a> {
    pub sku: &'a str,
    pub quantity: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price_minor: Option<u64>,
}

impl<'a> From<&'a Order> for OrderView<'a> {
    fn from(order: &'a Order) -> Self {
        OrderView {
            id: &order.id,
            status: order.status,
            step: order.step,
            lines: order.lines.iter().map(LineView::from).collect(),
            total_minor: order.total_minor,
            reason: order.reason.as_deref(),
            cancel_requested: order.cancel_requested,
            created_at_ms: order.created_at_ms,
            updated_at_ms: order.updated_at_ms,
        }
    }
}

impl<'a> From<&'a Line> for LineView<'a> {
    fn from(line: &'a Line) -> Self {
        LineView {
            sku: &line.sku,
            quantity: line.quantity,
            price_minor: line.price_minor,
        }
    }
}

/// One page of `GET /v1/orders`, with the cursor of the next page if there is one.
#[derive(Debug, Serialize)]
pub struct OrderPage<'a> {
    pub orders: Vec<OrderView<'a>>,
    pub next_after: Option<String>,
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value;

    use super::*;

    const CARD: &str = "4111111111111111";
    const TRACEPARENT: &str = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";

    /// A stored order with every optional field set, the internal ones included.
    fn stored() -> Order {
        Order {
            id: "ord-0-01jd3x".into(),
            status: Status::Cancelled,
            step: Step::Done,
            lines: vec![Line {
                sku: "tea".into(),
                quantity: 2,
                price_minor: Some(450),
            }],
            total_minor: Some(900),
            card_last4: Some("4242".into()),
            card_on_file: true,
            legacy_card: Some(CARD.into()),
            reason: Some("payment declined".into()),
            cancel_requested: true,
            created_at_ms: 1,
            updated_at_ms: 2,
            traceparent: Some(TRACEPARENT.into()),
        }
    }

    fn keys(value: &Value) -> BTreeSet<String> {
        value
            .as_object()
            .expect("an object")
            .keys()
            .cloned()
            .collect()
    }

    /// The `Order` schema the gateway publishes.
    fn documented_order() -> Value {
        let doc: Value = serde_json::from_str(include_str!("../gateway/openapi.json")).unwrap();
        doc["components"]["schemas"]["Order"].clone()
    }

    #[test]
    fn the_view_has_exactly_the_documented_fields() {
        let schema = documented_order();
        let view = serde_json::to_value(OrderView::from(&stored())).unwrap();
        assert_eq!(keys(&view), keys(&schema["properties"]), "{view}");
        assert_eq!(
            keys(&view["lines"][0]),
            keys(&schema["properties"]["lines"]["items"]["properties"]),
            "{view}"
        );
    }

    #[test]
    fn nothing_internal_is_in_the_view() {
        let order = stored();
        let stored_json = serde_json::to_value(&order).unwrap();
        let documented = keys(&documented_order()["properties"]);
        let internal: BTreeSet<String> = keys(&stored_json)
            .difference(&documented)
            .cloned()
            .collect();
        // The fields this test is about exist on the stored order, so it can fail.
        assert!(internal.contains("card_last4") && internal.contains("traceparent"));
        assert!(
            !stored_json.to_string().contains(CARD),
            "a card read from an old row is never written again: {stored_json}"
        );
        let view = serde_json::to_value(OrderView::from(&order)).unwrap();
        for field in &internal {
            assert!(view.get(field).is_none(), "`{field}` leaks: {view}");
        }
        let text = view.to_string();
        assert!(!text.contains(CARD), "card number leaks: {text}");
        assert!(
            !text.contains("0af7651916cd43dd8448eb211c80319c"),
            "trace leaks: {text}"
        );
    }

    #[test]
    fn the_view_keeps_the_values_and_the_wire_shapes() {
        let mut order = stored();
        let view = serde_json::to_value(OrderView::from(&order)).unwrap();
        assert_eq!(view["status"], "cancelled");
        assert_eq!(view["step"], "done");
        assert_eq!(view["total_minor"], 900);
        assert_eq!(view["reason"], "payment declined");
        assert_eq!(view["lines"][0]["price_minor"], 450);
        // Before the reservation: no total and no reason are `null`, a line has no price.
        order.total_minor = None;
        order.reason = None;
        order.lines[0].price_minor = None;
        let view = serde_json::to_value(OrderView::from(&order)).unwrap();
        assert_eq!(view["total_minor"], Value::Null);
        assert_eq!(view["reason"], Value::Null);
        assert!(view.get("total_minor").is_some() && view.get("reason").is_some());
        assert!(view["lines"][0].get("price_minor").is_none(), "{view}");
    }
}
