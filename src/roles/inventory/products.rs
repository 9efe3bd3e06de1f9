//! Products and their stock: the inventory's catalogue, plain Rust over its redb file.
//!
//! A [`NewProduct`] is parsed once at the edge (SKU alphabet, name as
//! [`super::product_name`] says, price and stock bounds), so the store only ever holds
//! valid products. Creating a product that exists is a conflict, never an overwrite. Stock lives in three buckets, and every
//! change moves units between them or adds/removes available units in one transaction,
//! so `available + reserved + sold` always equals all stock ever added.

use std::ops::Bound;

use redb::{ReadableTable, Table, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::error::InventoryError;
use super::product_name::check_name;
use svc_platform::ids;
use svc_platform::store::{self, Command, JsonTable, Store, StoreError};

pub(super) const PRODUCTS: JsonTable = TableDefinition::new("inventory_products");

/// Largest price in minor units (one billion units of the currency).
pub const MAX_PRICE_MINOR: u64 = 100_000_000_000;
pub const MAX_STOCK: u64 = 1_000_000_000;
/// Largest single stock adjustment, either way.
pub const MAX_STOCK_DELTA: u64 = 1_000_000_000;
pub const DEFAULT_PAGE: usize = 100;
pub const MAX_PAGE: usize = 1000;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Product {
    pub sku: String,
    pub name: String,
    pub price_minor: u64,
    /// Units that can be reserved now.
    pub available: u64,
    /// Units held by reservations not yet committed or released. Missing in rows
    /// written before reservations existed, hence the default.
    #[serde(default)]
    pub reserved: u64,
    /// Units of committed reservations.
    #[serde(default)]
    pub sold: u64,
}

impl Product {
    /// All stock ever added: what the three buckets must always sum to.
    pub fn total_stock(&self) -> Option<u64> {
        self.available
            .checked_add(self.reserved)?
            .checked_add(self.sold)
    }
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

/// The body of a stock adjustment, before validation.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StockChange {
    pub delta: i64,
}

/// One page of the catalogue, in SKU order.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct Page {
    pub products: Vec<Product>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next_after: Option<String>,
}

pub fn check_sku(sku: &str) -> Result<(), String> {
    ids::check_id("sku", sku)
}

impl NewProduct {
    pub fn parse(self) -> Result<Product, InventoryError> {
        check_sku(&self.sku).map_err(InventoryError::Invalid)?;
        let name = check_name(&self.name).map_err(InventoryError::Invalid)?;
        if self.price_minor == 0 || self.price_minor > MAX_PRICE_MINOR {
            return Err(InventoryError::Invalid(format!(
                "price_minor: expected 1 to {MAX_PRICE_MINOR}"
            )));
        }
        if self.stock > MAX_STOCK {
            return Err(InventoryError::Invalid(format!(
                "stock: expected 0 to {MAX_STOCK}"
            )));
        }
        Ok(Product {
            sku: self.sku,
            name: name.to_string(),
            price_minor: self.price_minor,
            available: self.stock,
            reserved: 0,
            sold: 0,
        })
    }
}

impl StockChange {
    /// The delta, if it is a real change within bounds.
    pub fn parse(self) -> Result<i64, InventoryError> {
        if self.delta == 0 || self.delta.unsigned_abs() > MAX_STOCK_DELTA {
            return Err(InventoryError::Invalid(format!(
                "delta: expected a non-zero change from -{MAX_STOCK_DELTA} to {MAX_STOCK_DELTA}"
            )));
        }
        Ok(self.delta)
    }
}

/// Checks a page size from a query string: absent means the default.
pub fn page_size(limit: Option<usize>) -> Result<usize, InventoryError> {
    match limit {
        None => Ok(DEFAULT_PAGE),
        Some(n) if (1..=MAX_PAGE).contains(&n) => Ok(n),
        Some(_) => Err(InventoryError::Invalid(format!(
            "limit: expected 1 to {MAX_PAGE}"
        ))),
    }
}

/// Stores a new product; the check for an existing one is in the same transaction.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CreateProduct(pub Product);

impl Command for CreateProduct {
    type Output = ();
    type Error = InventoryError;

    fn apply(&self, tx: &WriteTransaction) -> Result<(), InventoryError> {
        let product = &self.0;
        let mut table = open(tx)?;
        if load(&table, &product.sku)?.is_some() {
            return Err(InventoryError::ProductExists(product.sku.clone()));
        }
        save(&mut table, product)?;
        Ok(())
    }
}

/// Adds units to (positive `delta`) or removes units from (negative) what is available.
/// Reserved and sold units are never touched: they belong to orders.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AdjustStock {
    pub sku: String,
    pub delta: i64,
}

impl Command for AdjustStock {
    type Output = Product;
    type Error = InventoryError;

    fn apply(&self, tx: &WriteTransaction) -> Result<Product, InventoryError> {
        let (sku, delta) = (self.sku.as_str(), self.delta);
        let mut table = open(tx)?;
        let mut product =
            load(&table, sku)?.ok_or_else(|| InventoryError::UnknownProduct(sku.to_string()))?;
        let amount = delta.unsigned_abs();
        if delta > 0 {
            // The total bounds each bucket, so a total that fits means `available` fits.
            let total = product.total_stock().and_then(|t| t.checked_add(amount));
            if total.is_none() {
                return Err(InventoryError::StockOverflow(sku.to_string()));
            }
            product.available += amount;
        } else {
            product.available = product.available.checked_sub(amount).ok_or_else(|| {
                InventoryError::NotEnoughToRemove {
                    sku: sku.to_string(),
                    remove: amount,
                    available: product.available,
                }
            })?;
        }
        save(&mut table, &product)?;
        Ok(product)
    }
}

/// [`CreateProduct`], submitted and waited for: for tests.
#[cfg(test)]
pub(super) fn create_product(store: &Store, product: &Product) -> Result<(), InventoryError> {
    store.submit_blocking(CreateProduct(product.clone()))
}

/// [`AdjustStock`], submitted and waited for: for tests.
#[cfg(test)]
pub(super) fn adjust_stock(
    store: &Store,
    sku: &str,
    delta: i64,
) -> Result<Product, InventoryError> {
    store.submit_blocking(AdjustStock {
        sku: sku.to_string(),
        delta,
    })
}

pub fn get_product(store: &Store, sku: &str) -> Result<Option<Product>, StoreError> {
    store.get_json(PRODUCTS, sku)
}

/// Up to `limit` products with a SKU after `after`, and where the next page starts.
pub fn list_products(store: &Store, after: Option<&str>, limit: usize) -> Result<Page, StoreError> {
    let tx = store.begin_read()?;
    let table = match tx.open_table(PRODUCTS) {
        Ok(t) => t,
        Err(redb::TableError::TableDoesNotExist(_)) => {
            return Ok(Page {
                products: Vec::new(),
                next_after: None,
            })
        }
        Err(e) => return Err(e.into()),
    };
    let start = after.map_or(Bound::Unbounded, Bound::Excluded);
    let mut products = Vec::new();
    let mut more = false;
    for row in table.range::<&str>((start, Bound::Unbounded))? {
        if products.len() == limit {
            more = true;
            break;
        }
        let (_, v) = row?;
        products.push(store::decode::<Product>(v.value())?);
    }
    let next_after = if more {
        products.last().map(|p| p.sku.clone())
    } else {
        None
    };
    Ok(Page {
        products,
        next_after,
    })
}

/// The products table inside a caller's write transaction, for changes that span
/// products and another table (reservations) atomically.
pub(super) fn open(tx: &WriteTransaction) -> Result<ProductTable<'_>, StoreError> {
    Ok(tx.open_table(PRODUCTS)?)
}

pub(super) type ProductTable<'txn> = Table<'txn, &'static str, &'static [u8]>;

pub(super) fn load(
    table: &impl ReadableTable<&'static str, &'static [u8]>,
    sku: &str,
) -> Result<Option<Product>, StoreError> {
    match table.get(sku)? {
        Some(v) => store::decode(v.value()).map(Some),
        None => Ok(None),
    }
}

pub(super) fn save(table: &mut ProductTable<'_>, product: &Product) -> Result<(), StoreError> {
    table.insert(product.sku.as_str(), store::encode(product).as_slice())?;
    Ok(())
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

    fn open_store(dir: &tempfile::TempDir) -> Store {
        Store::open(&dir.path().join("i.redb")).unwrap()
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
        let store = open_store(&dir);
        let p = new("tea", 450, 10).parse().unwrap();
        create_product(&store, &p).unwrap();
        let other = new("tea", 999, 1).parse().unwrap();
        assert!(matches!(
            create_product(&store, &other),
            Err(InventoryError::ProductExists(_))
        ));
        assert_eq!(get_product(&store, "tea").unwrap(), Some(p));
    }

    #[test]
    fn rows_without_buckets_read_as_zero() {
        let old = br#"{"sku":"tea","name":"Tea","price_minor":1,"available":3}"#;
        let p: Product = store::decode(old).unwrap();
        assert_eq!((p.available, p.reserved, p.sold), (3, 0, 0));
    }

    #[test]
    fn delta_bounds() {
        assert!(StockChange { delta: 0 }.parse().is_err());
        assert!(StockChange {
            delta: 1_000_000_001
        }
        .parse()
        .is_err());
        assert!(StockChange {
            delta: -1_000_000_001
        }
        .parse()
        .is_err());
        assert!(StockChange { delta: i64::MIN }.parse().is_err());
        assert_eq!(StockChange { delta: -5 }.parse().unwrap(), -5);
    }

    #[test]
    fn adjust_adds_and_removes_available_only() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        create_product(&store, &new("tea", 450, 10).parse().unwrap()).unwrap();
        assert_eq!(adjust_stock(&store, "tea", 5).unwrap().available, 15);
        assert_eq!(adjust_stock(&store, "tea", -15).unwrap().available, 0);
        let err = adjust_stock(&store, "tea", -1).unwrap_err();
        assert!(
            matches!(err, InventoryError::NotEnoughToRemove { .. }),
            "{err}"
        );
        assert_eq!(get_product(&store, "tea").unwrap().unwrap().available, 0);
        assert!(matches!(
            adjust_stock(&store, "nope", 1),
            Err(InventoryError::UnknownProduct(_))
        ));
    }

    #[test]
    fn pages_walk_the_catalogue_in_sku_order() {
        let dir = tempfile::tempdir().unwrap();
        let store = open_store(&dir);
        assert_eq!(list_products(&store, None, 2).unwrap().products, vec![]);
        for sku in ["c", "a", "e", "b", "d"] {
            create_product(&store, &new(sku, 1, 1).parse().unwrap()).unwrap();
        }
        let skus = |p: &Page| p.products.iter().map(|p| p.sku.clone()).collect::<Vec<_>>();
        let first = list_products(&store, None, 2).unwrap();
        assert_eq!(skus(&first), ["a", "b"]);
        assert_eq!(first.next_after.as_deref(), Some("b"));
        let second = list_products(&store, Some("b"), 2).unwrap();
        assert_eq!(skus(&second), ["c", "d"]);
        let last = list_products(&store, Some("d"), 2).unwrap();
        assert_eq!(skus(&last), ["e"]);
        assert_eq!(last.next_after, None);
        // Exactly filling a page is still the last page.
        let exact = list_products(&store, Some("c"), 2).unwrap();
        assert_eq!(skus(&exact), ["d", "e"]);
        assert_eq!(exact.next_after, None);
        assert!(page_size(Some(0)).is_err());
        assert!(page_size(Some(MAX_PAGE + 1)).is_err());
        assert_eq!(page_size(None).unwrap(), DEFAULT_PAGE);
    }
}
