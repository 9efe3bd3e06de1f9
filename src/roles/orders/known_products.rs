//! The SKUs inventory has confirmed to exist, so a create checks each product once, not
//! once per order.
//!
//! Products are never deleted (inventory has no such operation), so "exists" stays true
//! once inventory said it; "unknown" is never remembered, since the product may be
//! created a moment later. Should a product vanish anyway (a lost inventory file), the
//! saga's reserve step still refuses it and the order is cancelled, not confirmed. The
//! set is bounded: when full it starts over, which costs a few lookups, never a wrong
//! answer.

use std::collections::HashSet;

use parking_lot::RwLock;

/// SKUs remembered at most; far more than a shop sells at once.
const CAPACITY: usize = 100_000;

#[derive(Default)]
pub struct KnownProducts {
    skus: RwLock<HashSet<String>>,
}

impl KnownProducts {
    pub fn contains(&self, sku: &str) -> bool {
        self.skus.read().contains(sku)
    }

    /// Remembers that inventory confirmed `sku`.
    pub fn insert(&self, sku: &str) {
        let mut skus = self.skus.write();
        if skus.len() >= CAPACITY {
            skus.clear();
        }
        skus.insert(sku.to_string());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_what_it_was_told_and_starts_over_when_full() {
        let known = KnownProducts::default();
        assert!(!known.contains("tea"));
        known.insert("tea");
        assert!(known.contains("tea"));
        for i in 0..CAPACITY {
            known.insert(&format!("sku-{i}"));
        }
        assert!(known.skus.read().len() <= CAPACITY);
        assert!(known.contains(&format!("sku-{}", CAPACITY - 1)));
    }
}
