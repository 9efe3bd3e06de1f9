//! Tests of the payments rules across payments and the ledger, run on a real redb file
//! in a temporary directory and without a server.
//!
//! The check most tests end with: the totals replayed from the ledger equal the totals
//! of the payment rows, and each effect is in the ledger exactly once.

use std::sync::Arc;

use super::error::PaymentError;
use super::ledger::{self, EntryKind};
use super::payment::{Authorization, AuthorizeRequest, Payment, PaymentStatus};
use super::transitions::{authorize, capture, get_payment, list_payments, void, Authorized};
use svc_platform::store::Store;

const LIMIT: u64 = 1_000_000;
const T0: u64 = 1_000;

fn store() -> (tempfile::TempDir, Store) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("payments.redb")).unwrap();
    (dir, store)
}

fn auth(amount: u64, card: Option<&str>) -> Authorization {
    AuthorizeRequest {
        amount_minor: amount,
        card: card.map(String::from),
        card_on_file: false,
    }
    .parse()
    .unwrap()
}

fn kinds(store: &Store) -> Vec<(String, EntryKind)> {
    ledger::read(store)
        .unwrap()
        .entries
        .into_iter()
        .map(|e| (e.order_id, e.kind))
        .collect()
}

/// The ledger's totals must match what the payment rows say.
fn assert_ledger_agrees(store: &Store) {
    let l = ledger::read(store).unwrap();
    let rows = list_payments(store).unwrap();
    let sum = |status| -> u64 {
        rows.iter()
            .filter(|p| p.status == status)
            .map(|p| p.amount_minor)
            .sum()
    };
    assert_eq!(l.captured_total_minor, sum(PaymentStatus::Captured));
    assert_eq!(l.authorized_open_minor, sum(PaymentStatus::Authorized));
}

fn created(r: Result<Authorized, PaymentError>) -> Payment {
    match r.unwrap() {
        Authorized::Created(p) => p,
        other => panic!("expected a new authorization, got {other:?}"),
    }
}

#[test]
fn authorize_and_capture_are_idempotent() {
    let (_d, store) = store();
    let p = created(authorize(&store, "o1", &auth(500, None), LIMIT, T0));
    assert_eq!(p.status, PaymentStatus::Authorized);
    let again = authorize(&store, "o1", &auth(500, None), LIMIT, T0 + 1).unwrap();
    assert_eq!(again, Authorized::Existing(p));
    assert_ledger_agrees(&store);

    let c = capture(&store, "o1", T0 + 2).unwrap();
    assert_eq!(c.status, PaymentStatus::Captured);
    assert_eq!(capture(&store, "o1", T0 + 3).unwrap(), c);
    // A retried authorize after capture answers the captured payment, takes nothing.
    assert_eq!(
        authorize(&store, "o1", &auth(500, None), LIMIT, T0 + 4).unwrap(),
        Authorized::Existing(c)
    );
    assert_eq!(
        kinds(&store),
        [
            ("o1".into(), EntryKind::Authorize),
            ("o1".into(), EntryKind::Capture)
        ]
    );
    assert_ledger_agrees(&store);
    let l = ledger::read(&store).unwrap();
    assert_eq!((l.captured_total_minor, l.authorized_open_minor), (500, 0));
}

#[test]
fn a_different_amount_is_a_conflict() {
    let (_d, store) = store();
    created(authorize(&store, "o1", &auth(500, None), LIMIT, T0));
    let e = authorize(&store, "o1", &auth(501, None), LIMIT, T0).unwrap_err();
    assert!(matches!(e, PaymentError::DifferentAmount { .. }), "{e}");
    assert_eq!(kinds(&store).len(), 1);
}

#[test]
fn declines_are_stored_once_and_repeated() {
    let (_d, store) = store();
    let over = authorize(&store, "big", &auth(1_500_000, None), LIMIT, T0).unwrap();
    let Authorized::Declined(p) = over else {
        panic!("expected a decline, got {over:?}")
    };
    assert_eq!(p.status, PaymentStatus::Declined);
    assert_eq!(
        p.reason.as_deref(),
        Some("declined: amount 1500000 exceeds the limit of 1000000")
    );
    let again = authorize(&store, "big", &auth(1_500_000, None), LIMIT, T0 + 1).unwrap();
    assert_eq!(again, Authorized::Declined(p));

    let card = authorize(
        &store,
        "card",
        &auth(10, Some("4000000000000002")),
        LIMIT,
        T0,
    );
    let Ok(Authorized::Declined(p)) = card else {
        panic!("expected a decline, got {card:?}")
    };
    assert_eq!(p.reason.as_deref(), Some("declined: test card ending 0002"));

    // A declined payment cannot be captured; voiding it is a no-op.
    let e = capture(&store, "card", T0).unwrap_err();
    assert_eq!(
        e.to_string(),
        "payment for order `card` was declined: test card ending 0002"
    );
    assert_eq!(void(&store, "card", T0).unwrap(), p);
    assert_eq!(
        kinds(&store),
        [
            ("big".into(), EntryKind::Decline),
            ("card".into(), EntryKind::Decline)
        ]
    );
    assert_ledger_agrees(&store);
    let l = ledger::read(&store).unwrap();
    assert_eq!((l.captured_total_minor, l.authorized_open_minor), (0, 0));
}

#[test]
fn void_releases_the_authorization_once() {
    let (_d, store) = store();
    created(authorize(&store, "o1", &auth(700, None), LIMIT, T0));
    created(authorize(&store, "o2", &auth(300, None), LIMIT, T0));
    let v = void(&store, "o1", T0 + 1).unwrap();
    assert_eq!(v.status, PaymentStatus::Voided);
    assert_eq!(void(&store, "o1", T0 + 2).unwrap(), v);
    let l = ledger::read(&store).unwrap();
    assert_eq!((l.captured_total_minor, l.authorized_open_minor), (0, 300));
    assert_ledger_agrees(&store);

    assert!(matches!(
        capture(&store, "o1", T0),
        Err(PaymentError::Voided(_))
    ));
    capture(&store, "o2", T0).unwrap();
    assert!(matches!(
        void(&store, "o2", T0),
        Err(PaymentError::AlreadyCaptured(_))
    ));
    assert!(matches!(
        capture(&store, "nope", T0),
        Err(PaymentError::UnknownPayment(_))
    ));
    assert_eq!(kinds(&store).len(), 4);
    assert_ledger_agrees(&store);
}

#[test]
fn void_before_authorize_leaves_a_tombstone_that_refuses() {
    let (_d, store) = store();
    let t = void(&store, "late", T0).unwrap();
    assert_eq!((t.status, t.amount_minor), (PaymentStatus::Voided, 0));
    let e = authorize(&store, "late", &auth(500, None), LIMIT, T0 + 1).unwrap_err();
    assert_eq!(e.to_string(), "payment for order `late` was voided");
    assert_eq!(get_payment(&store, "late").unwrap(), Some(t.clone()));
    assert_eq!(void(&store, "late", T0 + 2).unwrap(), t);
    assert_eq!(kinds(&store), [("late".into(), EntryKind::Void)]);
    assert_ledger_agrees(&store);
}

#[test]
fn concurrent_authorizes_of_one_order_act_once() {
    let (_d, store) = store();
    let store = Arc::new(store);
    let threads: Vec<_> = (0..8)
        .map(|_| {
            let store = store.clone();
            std::thread::spawn(move || authorize(&store, "o1", &auth(900, None), LIMIT, T0))
        })
        .collect();
    let results: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let new = results
        .iter()
        .filter(|r| matches!(r, Ok(Authorized::Created(_))))
        .count();
    let existing = results
        .iter()
        .filter(|r| matches!(r, Ok(Authorized::Existing(_))))
        .count();
    assert_eq!((new, existing), (1, 7));
    assert_eq!(kinds(&store), [("o1".into(), EntryKind::Authorize)]);
}
