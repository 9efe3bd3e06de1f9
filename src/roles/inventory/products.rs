//! Products and their stock: the inventory's domain, plain Rust over its redb file.
//!
//! A [`NewProduct`] is parsed once at the edge (SKU alphabet, name length, price and
//! stock bounds), so the store only ever holds valid products. Creating a product that
//! exists is a conflict, never an overwrite.

use redb::{ReadableTable, TableDefinition};
use serde::{Deserialize, Serialize};

use crate::platform::store::{self, JsonTable, Store, StoreError};

const PRODUCTS: JsonTable = TableDefinition::new("inventory_products");

/// Largest price in minor units (one billion units of the currency).
pub const MAX_PRICE_MINOR: u64 = 100_000_000_000;
pub const MAX_STOCK: u64 = 1_000_000_000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub price_minor: u64,
    pub available: u64,
}

/// The body of a create request, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewProduct {
    pub sku: String,
    pub name: String,
    pub price_minor: u64,
    pub stock: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum ProductError {
    #[error("{0}")]
    Invalid(String),
    #[error("product `{0}` already exists")]
    Exists(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

pub fn check_sku(sku: &str) -> Result<(), String> {
    let ok = !sku.is_empty()
        && sku.len() <= 64
        && sku
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(format!("sku: `{sku}` must be 1 to 64 characters of A-Z a-z 0-9 - _ ."))
    }
}

impl NewProduct {
    pub fn parse(self) -> Result<Product, ProductError> {
        check_sku(&self.sku).map_err(ProductError::Invalid)?;
        let name = self.name.trim();
        if name.is_empty() || name.chars().count() > 200 {
            return Err(ProductError::Invalid("name: expected 1 to 200 characters".into()));
        }
        if self.price_minor == 0 || self.price_minor > MAX_PRICE_MINOR {
            return Err(ProductError::Invalid(format!(
                "price_minor: expected 1 to {MAX_PRICE_MINOR}"
            )));
        }
        if self.stock > MAX_STOCK {
            return Err(ProductError::Invalid(format!("stock: expected 0 to {MAX_STOCK}")));
        }
        Ok(Product {
            sku: self.sku,
            name: name.to_string(),
            price_minor: self.price_minor,
            available: self.stock,
        })
    }
}

/// Stores a new product; the check for an existing one is in the same transaction.
pub fn create_product(store: &Store, product: &Product) -> Result<(), ProductError> {
    let tx = store.db().begin_write().map_err(StoreError::from)?;
    {
        let mut table = tx.open_table(PRODUCTS).map_err(StoreError::from)?;
        if table.get(product.sku.as_str()).map_err(StoreError::from)?.is_some() {
            return Err(ProductError::Exists(product.sku.clone()));
        }
        table
            .insert(product.sku.as_str(), store::encode(product).as_slice())
            .map_err(StoreError::from)?;
    }
    tx.commit().map_err(StoreError::from)?;
    Ok(())
}

pub fn get_product(store: &Store, sku: &str) -> Result<Option<Product>, StoreError> {
    store.get_json(PRODUCTS, sku)
}

pub fn list_products(store: &Store) -> Result<Vec<Product>, StoreError> {
    store.scan_json(PRODUCTS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new(sku: &str, price: u64, stock: u64) -> NewProduct {
        NewProduct {
            sku: sku.into(),
            name: "Tea".into(),
            price_minor: price,
            stock,
        }
    }

    #[test]
    fn parse_rejects_bad_values() {
        assert!(new("tea-1", 450, 10).parse().is_ok());
        assert!(new("tea 1", 450, 10).parse().is_err());
        assert!(new("tea", 0, 10).parse().is_err());
        assert!(new("tea", 450, MAX_STOCK + 1).parse().is_err());
    }

    #[test]
    fn create_twice_is_a_conflict_and_keeps_the_first() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("i.redb")).unwrap();
        let p = new("tea", 450, 10).parse().unwrap();
        create_product(&store, &p).unwrap();
        let other = new("tea", 999, 1).parse().unwrap();
        assert!(matches!(create_product(&store, &other), Err(ProductError::Exists(_))));
        assert_eq!(get_product(&store, "tea").unwrap(), Some(p));
    }
}
