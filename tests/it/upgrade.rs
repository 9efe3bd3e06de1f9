//! State files written by the svc of redb 2 open in today's svc: each is upgraded in
//! place on first open and keeps every row (tests/fixtures/redb2/README.md says what
//! the files hold and how they were made).

use std::io::Read;
use std::time::Duration;

use crate::harness::*;

const FIXTURES: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/fixtures/redb2");
/// The state files, by the name an instance of the harness gives its file.
const FILES: [&str; 4] = [
    "orders-orders-0.redb",
    "inventory-inventory-0.redb",
    "payments-payments-0.redb",
    "notifications-notifications-0.redb",
];
const CONFIRMED: [&str; 3] = [
    "ord-0-01m8r1d4dh1gga44t35343v8bv",
    "ord-0-01m8r1d4emr8w00zzcv4cpfrpq",
    "ord-0-01m8r1d4fhh2k6165qfnadjvka",
];
const DECLINED: &str = "ord-0-01m8r1d4g94k9wevc2by2f9j3s";
/// Held when the files were written, with a deadline long past now.
const HELD: &str = "ord-0-held0001";
const RECOVERY: Duration = Duration::from_secs(25);

fn fixture(name: &str) -> Vec<u8> {
    let path = format!("{FIXTURES}/{name}.gz");
    let file = std::fs::File::open(&path).unwrap_or_else(|e| panic!("{path}: {e}"));
    let mut bytes = Vec::new();
    flate2::read::GzDecoder::new(file)
        .read_to_end(&mut bytes)
        .unwrap_or_else(|e| panic!("{path}: {e}"));
    bytes
}

#[tokio::test]
async fn state_files_of_redb_2_are_upgraded_in_place_and_keep_every_row() {
    let mut topology = Topology::shop();
    for name in FILES {
        topology = topology.seed_data(name, fixture(name));
    }
    let shop = topology.start().await;
    for id in ["orders-0", "inventory-0", "payments-0", "notifications-0"] {
        shop.member(id)
            .svc()
            .wait_for_log("upgraded the state file to redb file format v3", RECOVERY);
    }
    for name in FILES {
        let left = shop.sandbox.data_dir().join(format!("{name}.upgrading"));
        assert!(!left.exists(), "{} is left behind", left.display());
    }

    // Orders: every order as it was, with its payment and its one notification.
    let orders = shop.all_orders().await;
    let ids: Vec<&str> = orders.iter().map(|o| str_of(o, "id")).collect();
    let mut expected = CONFIRMED.to_vec();
    expected.push(DECLINED);
    assert_eq!(ids, expected, "{orders:?}");
    for id in CONFIRMED {
        let order = shop.order(id).await;
        assert_eq!(
            (str_of(&order, "status"), u64_of(&order, "total_minor")),
            ("confirmed", 900),
            "{order}"
        );
        let (status, payment) = shop.payment(id).await;
        assert_eq!((status, str_of(&payment, "status")), (200, "captured"));
    }
    let declined = shop.order(DECLINED).await;
    assert_eq!(
        declined["reason"], "declined: test card 4000000000000002",
        "{declined}"
    );
    let notifications = shop.try_all_notifications().await.unwrap();
    assert_eq!(notifications.len(), 4, "{notifications:?}");

    // The idempotency keys: the same request with a key used before is that order.
    let replay = shop
        .place_order(&order_body(&[("tea", 2)], None), Some("fixture-1"))
        .await;
    assert_eq!(
        (replay.status, replay.id()),
        (200, CONFIRMED[0].to_string()),
        "{replay:?}"
    );

    // Inventory: the hold index, whose keys redb 4 encodes differently, was rebuilt, so
    // the reservation held back then expires and gives its 3 units back.
    shop.member("inventory-0")
        .svc()
        .wait_for_log("rebuilt the deadline index of held reservations", RECOVERY);
    wait_for("the old hold to expire", RECOVERY, || async {
        match shop.stock("tea").await {
            (94, 0, 6) => Ok(()),
            other => Err(format!("{other:?}")),
        }
    })
    .await;
    let inventory = &shop.member("inventory-0").svc().url;
    let held = get_json(&format!("{inventory}/v1/reservations/{HELD}")).await;
    assert_eq!(held["status"], "expired", "{held}");

    // And the upgraded files take new writes: an order confirms, its event is numbered
    // after the old ones and recorded once.
    let order = shop.place_final(&order_body(&[("tea", 1)], None)).await;
    assert_eq!(order["status"], "confirmed", "{order}");
    shop.wait_notifications(5, Duration::from_secs(20)).await;
    assert_eq!(shop.stock("tea").await, (93, 0, 7));
}
