//! Tests of the inventory's rules across products, reservations and expiry, run on a
//! real redb file in a temporary directory and without a server.
//!
//! The invariant every test ends with: for each product, `available + reserved + sold`
//! equals all stock ever added.

use std::sync::Arc;

use super::error::InventoryError;
use super::expiry::{expire_due, expire_due_in_batches};
use super::products::{self, get_product, NewProduct, Product};
use super::reservations::{
    self, commit, get_reservation, list_reservations, release, reserve, ReservationStatus, Reserved,
};
use super::reserve_request::{LineRequest, ReserveOrder, ReserveRequest};
use svc_platform::store::Store;

const TTL: u64 = 60_000;
const T0: u64 = 1_000_000;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("inventory.redb")).unwrap();
    (dir, store)
}

fn add(store: &Store, sku: &str, price: u64, stock: u64) {
    let p = NewProduct {
        sku: sku.into(),
        name: sku.into(),
        price_minor: price,
        stock,
    };
    products::create_product(store, &p.parse().unwrap()).unwrap();
}

fn order(id: &str, lines: &[(&str, u64)]) -> ReserveOrder {
    ReserveRequest {
        order_id: id.into(),
        lines: lines
            .iter()
            .map(|(sku, quantity)| LineRequest {
                sku: sku.to_string(),
                quantity: *quantity,
            })
            .collect(),
    }
    .parse()
    .unwrap()
}

fn product(store: &Store, sku: &str) -> Product {
    get_product(store, sku).unwrap().unwrap()
}

fn buckets(store: &Store, sku: &str) -> (u64, u64, u64) {
    let p = product(store, sku);
    (p.available, p.reserved, p.sold)
}

fn assert_total(store: &Store, sku: &str, total: u64) {
    assert_eq!(product(store, sku).total_stock(), Some(total), "{sku}");
}

fn created(r: Result<Reserved, InventoryError>) -> reservations::Reservation {
    match r.unwrap() {
        Reserved::Created(r) => r,
        Reserved::Existing(r) => panic!("expected a new reservation, got {r:?}"),
    }
}

#[test]
fn reserve_prices_lines_and_is_idempotent() {
    let (_d, store) = store();
    add(&store, "tea", 450, 10);
    add(&store, "cake", 300, 5);
    let o = order("o1", &[("tea", 2), ("cake", 1)]);
    let r = created(reserve(&store, &o, T0, TTL));
    assert_eq!(r.status, ReservationStatus::Held);
    assert_eq!(r.total_minor, 2 * 450 + 300);
    assert_eq!(r.lines[0].price_minor, 450);
    assert_eq!(r.expires_at_ms, T0 + TTL);
    assert_eq!(buckets(&store, "tea"), (8, 2, 0));

    // Same order again, lines in another order: the same reservation, no second hold.
    let again = reserve(
        &store,
        &order("o1", &[("cake", 1), ("tea", 2)]),
        T0 + 5,
        TTL,
    );
    assert_eq!(again.unwrap(), Reserved::Existing(r));
    assert_eq!(buckets(&store, "tea"), (8, 2, 0));

    let other = reserve(&store, &order("o1", &[("tea", 3)]), T0, TTL);
    assert!(
        matches!(other, Err(InventoryError::DifferentLines(_))),
        "{other:?}"
    );
    assert_eq!(buckets(&store, "tea"), (8, 2, 0));
}

#[test]
fn out_of_stock_changes_nothing_and_keeps_no_record() {
    let (_d, store) = store();
    add(&store, "tea", 450, 2);
    add(&store, "cake", 300, 5);
    let o = order("o1", &[("cake", 1), ("tea", 5)]);
    let err = reserve(&store, &o, T0, TTL).unwrap_err();
    assert_eq!(
        err.to_string(),
        "out of stock: tea (requested 5, available 2)"
    );
    assert_eq!(buckets(&store, "cake"), (5, 0, 0));
    assert_eq!(buckets(&store, "tea"), (2, 0, 0));
    assert_eq!(get_reservation(&store, "o1").unwrap(), None);

    // After a restock the same order goes through.
    products::adjust_stock(&store, "tea", 3).unwrap();
    created(reserve(&store, &o, T0, TTL));
    assert_eq!(buckets(&store, "tea"), (0, 5, 0));
}

#[test]
fn unknown_sku_changes_nothing() {
    let (_d, store) = store();
    add(&store, "tea", 450, 2);
    let err = reserve(&store, &order("o1", &[("tea", 1), ("ghost", 1)]), T0, TTL).unwrap_err();
    assert!(
        matches!(&err, InventoryError::UnknownProduct(s) if s == "ghost"),
        "{err}"
    );
    assert_eq!(buckets(&store, "tea"), (2, 0, 0));
    assert_eq!(get_reservation(&store, "o1").unwrap(), None);
}

#[test]
fn commit_and_release_move_stock_and_keep_the_total() {
    let (_d, store) = store();
    add(&store, "tea", 450, 10);
    created(reserve(&store, &order("a", &[("tea", 3)]), T0, TTL));
    created(reserve(&store, &order("b", &[("tea", 4)]), T0, TTL));
    assert_eq!(buckets(&store, "tea"), (3, 7, 0));
    assert_total(&store, "tea", 10);

    let c = commit(&store, "a").unwrap();
    assert_eq!(c.status, ReservationStatus::Committed);
    assert_eq!(commit(&store, "a").unwrap(), c, "commit is idempotent");
    assert_eq!(buckets(&store, "tea"), (3, 4, 3));
    assert_total(&store, "tea", 10);

    let r = release(&store, "b", T0).unwrap();
    assert_eq!(r.status, ReservationStatus::Released);
    assert_eq!(
        release(&store, "b", T0 + 1).unwrap(),
        r,
        "release is idempotent"
    );
    assert_eq!(buckets(&store, "tea"), (7, 0, 3));
    assert_total(&store, "tea", 10);

    assert!(matches!(
        release(&store, "a", T0),
        Err(InventoryError::AlreadyCommitted(_))
    ));
    let e = commit(&store, "b").unwrap_err();
    assert_eq!(e.to_string(), "reservation for order `b` was released");
    assert!(matches!(
        commit(&store, "zz"),
        Err(InventoryError::UnknownReservation(_))
    ));

    // Stock adjustments change the total by exactly the delta.
    products::adjust_stock(&store, "tea", -7).unwrap();
    assert_total(&store, "tea", 3);
}

#[test]
fn release_before_reserve_leaves_a_tombstone_that_wins() {
    let (_d, store) = store();
    add(&store, "tea", 450, 10);
    let t = release(&store, "late", T0).unwrap();
    assert_eq!(t.status, ReservationStatus::Released);
    assert!(t.lines.is_empty());

    // The retried reserve that lost the race gets the tombstone and takes nothing.
    let r = reserve(&store, &order("late", &[("tea", 2)]), T0 + 1, TTL).unwrap();
    assert_eq!(r, Reserved::Existing(t.clone()));
    assert_eq!(buckets(&store, "tea"), (10, 0, 0));
    assert_eq!(release(&store, "late", T0 + 2).unwrap(), t);
}

#[test]
fn expiry_gives_stock_back_once_due() {
    let (_d, store) = store();
    add(&store, "tea", 450, 10);
    created(reserve(&store, &order("old", &[("tea", 3)]), T0, TTL));
    created(reserve(
        &store,
        &order("new", &[("tea", 2)]),
        T0 + 10_000,
        TTL,
    ));
    created(reserve(&store, &order("done", &[("tea", 1)]), T0, TTL));
    commit(&store, "done").unwrap();

    let sweep = expire_due(&store, T0 + TTL - 1).unwrap();
    assert!(sweep.expired.is_empty() && sweep.failed.is_empty());
    assert_eq!(buckets(&store, "tea"), (4, 5, 1));

    let sweep = expire_due(&store, T0 + TTL).unwrap();
    let ids: Vec<_> = sweep.expired.iter().map(|r| r.order_id.as_str()).collect();
    assert_eq!(ids, ["old"]);
    assert_eq!(buckets(&store, "tea"), (7, 2, 1));
    let old = get_reservation(&store, "old").unwrap().unwrap();
    assert_eq!(old.status, ReservationStatus::Expired);

    // Expired is final: commit refuses and says why, release is a no-op, a second sweep
    // finds nothing, and a retried reserve gets the expired record back.
    let e = commit(&store, "old").unwrap_err();
    assert_eq!(
        e.to_string(),
        "reservation for order `old` was released (expired)"
    );
    assert_eq!(release(&store, "old", T0 + TTL).unwrap(), old);
    assert!(expire_due(&store, T0 + TTL).unwrap().expired.is_empty());
    let again = reserve(&store, &order("old", &[("tea", 3)]), T0 + TTL, TTL).unwrap();
    assert_eq!(again, Reserved::Existing(old));
    assert_eq!(buckets(&store, "tea"), (7, 2, 1));

    let later = expire_due(&store, u64::MAX).unwrap();
    assert_eq!(later.expired.len(), 1);
    assert_eq!(buckets(&store, "tea"), (9, 0, 1));
    assert_total(&store, "tea", 10);
    let held = list_reservations(&store, Some(ReservationStatus::Held)).unwrap();
    assert!(held.is_empty());
}

#[test]
fn expiry_walks_every_batch() {
    let (_d, store) = store();
    add(&store, "tea", 1, 20);
    for i in 0..7 {
        created(reserve(
            &store,
            &order(&format!("o{i}"), &[("tea", 1)]),
            T0 + i,
            TTL,
        ));
    }
    let sweep = expire_due_in_batches(&store, T0 + TTL + 100, 3).unwrap();
    assert_eq!(sweep.expired.len(), 7);
    assert_eq!(buckets(&store, "tea"), (20, 0, 0));
}

#[test]
fn concurrent_reserves_take_exactly_the_stock() {
    let (_d, store) = store();
    add(&store, "tea", 450, 5);
    let store = Arc::new(store);
    let threads: Vec<_> = (0..16)
        .map(|i| {
            let store = store.clone();
            std::thread::spawn(move || {
                reserve(&store, &order(&format!("o{i}"), &[("tea", 1)]), T0, TTL)
            })
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let won = results
        .iter()
        .filter(|r| matches!(r, Ok(Reserved::Created(_))))
        .count();
    let refused = results
        .iter()
        .filter(|r| matches!(r, Err(InventoryError::OutOfStock(_))))
        .count();
    assert_eq!((won, refused), (5, 11));
    assert_eq!(buckets(&store, "tea"), (0, 5, 0));
    let held = list_reservations(&store, Some(ReservationStatus::Held)).unwrap();
    assert_eq!(held.len(), 5);
}
