//! What a reserve request must hold, checked once at the edge.
//!
//! A [`ReserveRequest`] body parses into a [`ReserveOrder`]: a valid order id, 1 to
//! [`MAX_LINES`] lines, each a valid SKU with a quantity of 1 to [`MAX_QUANTITY`], no SKU
//! twice. A `ReserveOrder` cannot be built any other way, so the reservation code never
//! sees an unchecked value.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::error::InventoryError;
use super::products::check_sku;
use svc_platform::ids;

pub const MAX_LINES: usize = 50;
pub const MAX_QUANTITY: u64 = 1000;

/// The body of a reserve request, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReserveRequest {
    pub order_id: String,
    pub lines: Vec<LineRequest>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineRequest {
    pub sku: String,
    pub quantity: u64,
}

/// A reserve request that passed every check. It serialises as part of the reserve
/// command; it is deserialised only from the store's own commands, never from a request.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReserveOrder {
    order_id: String,
    /// `(sku, quantity)`, SKUs unique, in request order.
    lines: Vec<(String, u64)>,
}

impl ReserveOrder {
    pub fn order_id(&self) -> &str {
        &self.order_id
    }

    pub fn lines(&self) -> &[(String, u64)] {
        &self.lines
    }
}

/// Order ids travel in URLs and name rows: a safe alphabet only.
pub fn check_order_id(id: &str) -> Result<(), InventoryError> {
    ids::check_id("order_id", id).map_err(InventoryError::Invalid)
}

impl ReserveRequest {
    pub fn parse(self) -> Result<ReserveOrder, InventoryError> {
        check_order_id(&self.order_id)?;
        if self.lines.is_empty() || self.lines.len() > MAX_LINES {
            return Err(InventoryError::Invalid(format!(
                "lines: expected 1 to {MAX_LINES} lines"
            )));
        }
        let invalid = |i: usize, m: String| InventoryError::Invalid(format!("lines[{i}].{m}"));
        let mut seen = HashSet::new();
        let mut lines = Vec::with_capacity(self.lines.len());
        for (i, line) in self.lines.into_iter().enumerate() {
            check_sku(&line.sku).map_err(|m| invalid(i, m))?;
            if !(1..=MAX_QUANTITY).contains(&line.quantity) {
                return Err(invalid(
                    i,
                    format!("quantity: expected 1 to {MAX_QUANTITY}"),
                ));
            }
            if !seen.insert(line.sku.clone()) {
                let m = format!("sku: `{}` appears on more than one line", line.sku);
                return Err(invalid(i, m));
            }
            lines.push((line.sku, line.quantity));
        }
        Ok(ReserveOrder {
            order_id: self.order_id,
            lines,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(id: &str, lines: Vec<(&str, u64)>) -> Result<ReserveOrder, InventoryError> {
        ReserveRequest {
            order_id: id.into(),
            lines: lines
                .into_iter()
                .map(|(s, q)| LineRequest {
                    sku: s.into(),
                    quantity: q,
                })
                .collect(),
        }
        .parse()
    }

    #[test]
    fn every_bound_is_checked() {
        assert!(parse("o-1", vec![("tea", 1)]).is_ok());
        assert!(parse("", vec![("tea", 1)]).is_err());
        assert!(parse("o/1", vec![("tea", 1)]).is_err());
        assert!(parse(&"o".repeat(65), vec![("tea", 1)]).is_err());
        assert!(parse("o-1", vec![]).is_err());
        assert!(parse("o-1", vec![("tea", 0)]).is_err());
        assert!(parse("o-1", vec![("tea", 1001)]).is_err());
        assert!(parse("o-1", vec![("t ea", 1)]).is_err());
        let many: Vec<String> = (0..51).map(|i| format!("s{i}")).collect();
        assert!(parse("o-1", many.iter().map(|s| (s.as_str(), 1)).collect()).is_err());
        assert!(parse("o-1", many[..50].iter().map(|s| (s.as_str(), 1)).collect()).is_ok());
    }

    #[test]
    fn a_sku_twice_names_the_line() {
        let e = parse("o-1", vec![("tea", 1), ("tea", 2)]).unwrap_err();
        assert_eq!(
            e.to_string(),
            "lines[1].sku: `tea` appears on more than one line"
        );
    }
}
