//! Everything an inventory operation can refuse, as one typed error.
//!
//! Each variant is a reason a person can act on, and its message is the `detail` of the
//! problem the HTTP layer answers with (see `http.rs` for the status of each). Storage
//! failures stay a separate variant so they are logged and answered as 500, never
//! mistaken for a refusal.

use svc_platform::store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum InventoryError {
    /// A value in the request is out of bounds or malformed.
    #[error("{0}")]
    Invalid(String),
    #[error("product `{0}` already exists")]
    ProductExists(String),
    #[error("no product `{0}`")]
    UnknownProduct(String),
    #[error("cannot remove {remove} of `{sku}`: only {available} available")]
    NotEnoughToRemove {
        sku: String,
        remove: u64,
        available: u64,
    },
    #[error("stock of `{0}` would exceed the largest storable amount")]
    StockOverflow(String),
    /// Every line that could not be served, in request order.
    #[error("out of stock: {}", shortages_text(.0))]
    OutOfStock(Vec<Shortage>),
    #[error("order `{0}` was reserved with different lines")]
    DifferentLines(String),
    #[error("no reservation for order `{0}`")]
    UnknownReservation(String),
    #[error("reservation for order `{order_id}` was released{}", if *.expired { " (expired)" } else { "" })]
    AlreadyReleased { order_id: String, expired: bool },
    #[error("reservation for order `{0}` was already committed")]
    AlreadyCommitted(String),
    /// Stored rows contradict each other; a bug or a damaged file, never user input.
    #[error("stored stock is inconsistent: {0}")]
    Inconsistent(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// One line of a reservation that asked for more than is available.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Shortage {
    pub sku: String,
    pub requested: u64,
    pub available: u64,
}

fn shortages_text(shortages: &[Shortage]) -> String {
    shortages
        .iter()
        .map(|s| {
            format!(
                "{} (requested {}, available {})",
                s.sku, s.requested, s.available
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

svc_platform::store::redb_errors_into!(InventoryError);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn out_of_stock_reads_like_a_sentence() {
        let e = InventoryError::OutOfStock(vec![
            Shortage {
                sku: "tea".into(),
                requested: 5,
                available: 2,
            },
            Shortage {
                sku: "cake".into(),
                requested: 1,
                available: 0,
            },
        ]);
        assert_eq!(
            e.to_string(),
            "out of stock: tea (requested 5, available 2); cake (requested 1, available 0)"
        );
    }

    #[test]
    fn expired_release_says_so() {
        let e = InventoryError::AlreadyReleased {
            order_id: "o1".into(),
            expired: true,
        };
        assert_eq!(
            e.to_string(),
            "reservation for order `o1` was released (expired)"
        );
    }
}
