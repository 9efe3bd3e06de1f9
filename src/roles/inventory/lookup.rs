//! Which of a list of SKUs exist: the batch lookup orders makes before it stores an
//! order (`POST /v1/product-lookups`), one per inventory shard rather than one call per
//! order line, all read in one snapshot.
//!
//! The SKUs must belong to this shard (421 otherwise, like a write: a misrouted lookup
//! would answer "unknown" for products that exist elsewhere), and there are at most as
//! many as an order has lines, many times over ([`MAX_SKUS`]).

use serde::{Deserialize, Serialize};

use super::error::InventoryError;
use super::products::{check_sku, PRODUCTS};
use svc_platform::store::{Store, StoreError};

/// Most SKUs one lookup may name.
pub const MAX_SKUS: usize = 1000;

/// The body of a lookup, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LookupRequest {
    pub skus: Vec<String>,
}

/// What a lookup answers: the SKUs asked for, split by whether the product exists,
/// each in the order asked.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct LookupAnswer {
    pub known: Vec<String>,
    pub unknown: Vec<String>,
}

impl LookupRequest {
    /// The SKUs, each checked, at least one and at most [`MAX_SKUS`].
    pub fn parse(self) -> Result<Vec<String>, InventoryError> {
        if self.skus.is_empty() || self.skus.len() > MAX_SKUS {
            return Err(InventoryError::Invalid(format!(
                "skus: expected 1 to {MAX_SKUS} SKUs"
            )));
        }
        for (i, sku) in self.skus.iter().enumerate() {
            check_sku(sku).map_err(|e| InventoryError::Invalid(format!("skus[{i}]: {e}")))?;
        }
        Ok(self.skus)
    }
}

/// Which of `skus` exist, read in one snapshot.
pub fn look_up(store: &Store, skus: Vec<String>) -> Result<LookupAnswer, StoreError> {
    let tx = store.begin_read()?;
    let table = match tx.open_table(PRODUCTS) {
        Ok(t) => Some(t),
        Err(redb::TableError::TableDoesNotExist(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let mut answer = LookupAnswer {
        known: Vec::new(),
        unknown: Vec::new(),
    };
    for sku in skus {
        let exists = match &table {
            Some(t) => t.get(sku.as_str())?.is_some(),
            None => false,
        };
        if exists {
            answer.known.push(sku);
        } else {
            answer.unknown.push(sku);
        }
    }
    Ok(answer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_lookup_names_one_to_many_valid_skus() {
        let parse = |skus: Vec<&str>| {
            LookupRequest {
                skus: skus.into_iter().map(String::from).collect(),
            }
            .parse()
        };
        assert_eq!(parse(vec!["tea", "mint"]).unwrap(), ["tea", "mint"]);
        assert!(parse(vec![]).is_err());
        assert!(parse(vec!["tea", ".."]).is_err());
        assert!(parse(vec!["a/b"]).is_err());
        assert!(parse(vec!["x"; MAX_SKUS + 1]).is_err());
    }
}
