//! Where the parts of an order live: which inventory shards hold its lines, which
//! payments shard holds its payment, and how the reservations of several inventory
//! shards add up to one. Pure functions over the shard counts, so every rule is tested
//! without a network.
//!
//! A product lives on inventory shard `fnv1a64(sku) % shards(inventory)`, so an order's
//! lines may span shards: the saga then holds one reservation per shard, each for that
//! shard's lines and idempotent per order id there, exactly like a single reservation.
//! The payment lives on payments shard `fnv1a64(order id) % shards(payments)`.

use std::collections::BTreeMap;

use super::order::{Line, Outcome};
use svc_platform::shards::ShardCounts;

pub const INVENTORY: &str = "inventory";
pub const PAYMENTS: &str = "payments";

/// The order's lines grouped by the inventory shard owning each SKU, in shard order.
pub fn lines_by_inventory_shard<'a>(
    lines: &'a [Line],
    shards: &ShardCounts,
) -> BTreeMap<u32, Vec<&'a Line>> {
    let mut groups: BTreeMap<u32, Vec<&Line>> = BTreeMap::new();
    for line in lines {
        groups
            .entry(shards.owner(INVENTORY, &line.sku))
            .or_default()
            .push(line);
    }
    groups
}

/// The payments shard holding the payment of `order_id`.
pub fn payments_shard(order_id: &str, shards: &ShardCounts) -> u32 {
    shards.owner(PAYMENTS, order_id)
}

/// One order's reservation outcome from the outcomes of its shards: refused if any shard
/// refused (the reasons joined, in shard order), else held with every shard's prices and
/// the sum of their totals.
pub fn merge_reservations(parts: Vec<Outcome>) -> Outcome {
    let mut prices = Vec::new();
    let mut total: u64 = 0;
    let mut refusals = Vec::new();
    for part in parts {
        match part {
            Outcome::Reserved {
                prices: p,
                total_minor,
            } => {
                prices.extend(p);
                match total.checked_add(total_minor) {
                    Some(t) => total = t,
                    None => refusals.push("the order's total is too large to represent".into()),
                }
            }
            Outcome::Refused(reason) => refusals.push(reason),
            // A reservation never answers "done"; nothing to add.
            Outcome::Done => {}
        }
    }
    if refusals.is_empty() {
        Outcome::Reserved {
            prices,
            total_minor: total,
        }
    } else {
        Outcome::Refused(refusals.join("; "))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use svc_platform::shards::shard_for_key;

    fn line(sku: &str) -> Line {
        Line {
            sku: sku.into(),
            quantity: 1,
            price_minor: None,
        }
    }

    fn two_inventory_shards() -> ShardCounts {
        ShardCounts::parse_list(&["inventory=2".into(), "payments=3".into()]).unwrap()
    }

    #[test]
    fn lines_are_grouped_by_the_shard_owning_their_sku() {
        let shards = two_inventory_shards();
        let skus: Vec<String> = (0..12).map(|i| format!("sku-{i}")).collect();
        let lines: Vec<Line> = skus.iter().map(|s| line(s)).collect();
        let groups = lines_by_inventory_shard(&lines, &shards);
        assert_eq!(groups.keys().copied().collect::<Vec<_>>(), [0, 1]);
        for (shard, group) in &groups {
            for l in group {
                assert_eq!(shard_for_key(&l.sku, 2), *shard, "{}", l.sku);
            }
        }
        assert_eq!(groups.values().map(Vec::len).sum::<usize>(), 12);
        let one = lines_by_inventory_shard(&lines, &ShardCounts::default());
        assert_eq!(one.len(), 1, "one shard holds everything");
    }

    #[test]
    fn the_payment_lives_where_the_order_id_hashes() {
        let shards = two_inventory_shards();
        assert_eq!(
            payments_shard("ord-1-abc", &shards),
            shard_for_key("ord-1-abc", 3)
        );
        assert_eq!(payments_shard("ord-1-abc", &ShardCounts::default()), 0);
    }

    #[test]
    fn reservations_of_every_shard_add_up() {
        let merged = merge_reservations(vec![
            Outcome::Reserved {
                prices: vec![("tea".into(), 450)],
                total_minor: 900,
            },
            Outcome::Reserved {
                prices: vec![("cup".into(), 100)],
                total_minor: 300,
            },
        ]);
        assert_eq!(
            merged,
            Outcome::Reserved {
                prices: vec![("tea".into(), 450), ("cup".into(), 100)],
                total_minor: 1200,
            }
        );
    }

    #[test]
    fn one_refusing_shard_refuses_the_order() {
        let merged = merge_reservations(vec![
            Outcome::Reserved {
                prices: vec![("tea".into(), 450)],
                total_minor: 900,
            },
            Outcome::Refused("out of stock: cup".into()),
        ]);
        assert_eq!(merged, Outcome::Refused("out of stock: cup".into()));
        let overflow = merge_reservations(vec![
            Outcome::Reserved {
                prices: vec![],
                total_minor: u64::MAX,
            },
            Outcome::Reserved {
                prices: vec![],
                total_minor: 1,
            },
        ]);
        assert!(matches!(overflow, Outcome::Refused(r) if r.contains("too large")));
    }
}
