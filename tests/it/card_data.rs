//! Card data at rest: only payments holds a card number, sealed, and only until the
//! payment is decided; orders keeps its last four digits and a keyed fingerprint. After
//! a run of orders with cards, no file under the data dir (state files, logs, keys)
//! holds a card number, and every file and directory svc made there is owner-only.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};

use crate::harness::*;

const CARDS: [&str; 2] = ["4242424242424242", "4000000000000002"];

fn every_entry(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            every_entry(&path, out);
        }
        out.push(path);
    }
}

/// The written forms of `card`: digits, in groups of four with spaces or dashes.
fn forms(card: &str) -> Vec<String> {
    let groups: Vec<&str> = (0..card.len())
        .step_by(4)
        .map(|i| &card[i..(i + 4).min(card.len())])
        .collect();
    vec![card.to_string(), groups.join(" "), groups.join("-")]
}

#[tokio::test]
async fn no_file_under_the_data_dir_holds_a_card_number_and_all_are_private() {
    let mut shop = Topology::shop().log_files().start().await;
    shop.create_product("tea", 450, 10).await;

    let paid = order_body(&[("tea", 1)], Some("4242 4242 4242 4242"));
    let placed = shop.place_order(&paid, Some("card-at-rest-1")).await;
    assert_eq!(placed.body["status"], "confirmed", "{placed:?}");
    let replayed = shop.place_order(&paid, Some("card-at-rest-1")).await;
    assert_eq!(
        replayed.id(),
        placed.id(),
        "the keyed fingerprint still matches"
    );
    let declined = order_body(&[("tea", 1)], Some("4000-0000-0000-0002"));
    let declined = shop.place_order(&declined, None).await;
    assert_eq!(declined.body["status"], "cancelled", "{declined:?}");
    let reason = declined.body["reason"].as_str().unwrap_or_default();
    assert!(reason.contains("ending 0002"), "{reason}");
    shop.stop_all();

    let data = shop.sandbox.data_dir();
    let mut entries = Vec::new();
    every_entry(&data, &mut entries);
    entries.push(data.clone());
    let logs = data.join("logs");
    assert!(
        entries.iter().any(|p| p.starts_with(&logs) && p.is_file()),
        "the run wrote log files"
    );
    let mut leaks = Vec::new();
    for path in &entries {
        let mode = std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        let expected = if path.is_dir() { 0o700 } else { 0o600 };
        if mode != expected {
            leaks.push(format!("{} has mode {mode:o}", path.display()));
        }
        if path.is_file() {
            let bytes = std::fs::read(path).unwrap();
            for form in CARDS.iter().flat_map(|c| forms(c)) {
                if bytes.windows(form.len()).any(|w| w == form.as_bytes()) {
                    leaks.push(format!("{} holds `{form}`", path.display()));
                }
            }
        }
    }
    assert!(leaks.is_empty(), "{leaks:#?}");
}
