//! The card vault: the one place a card number is kept at rest, and only until its
//! order's payment is decided.
//!
//! Orders hands the card over when it takes the order (`PUT /v1/payments/{order}/card`)
//! and keeps only its last four digits; the authorization of that order takes the card
//! from here and forgets it in the same commit, as does a void. A card whose order never
//! gets that far is forgotten when its hold expires. The card is sealed (AES-256-GCM)
//! before its command is built, under a key kept in its own file beside the state file,
//! so neither the redb file (nor its free pages, nor a replica replaying the commands)
//! ever holds a card number in the clear.

use std::sync::Arc;
use std::time::Duration;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::error::PaymentError;
use crate::domain::CardNumber;
use svc_platform::clock::now_ms;
use svc_platform::secret_key::SecretKey;
use svc_platform::shutdown::Shutdown;
use svc_platform::store::{self, Command, JsonTable, Store, StoreError};

/// Held cards by order id.
const HELD_CARDS: JsonTable = TableDefinition::new("payments_held_cards");
const PAYMENTS: JsonTable = TableDefinition::new("payments");

/// How long a card is held for an order whose payment is not decided yet. An order
/// waiting longer (its inventory down for an hour) is declined for want of a card.
pub const HOLD_FOR_MS: u64 = 60 * 60 * 1000;

const EXPIRY_SWEEP: Duration = Duration::from_secs(60);

#[derive(Debug, Clone, Serialize, Deserialize)]
struct HeldCard {
    sealed: Vec<u8>,
    held_until_ms: u64,
}

/// Seals and opens the cards of this shard.
pub struct CardVault {
    key: SecretKey,
}

impl CardVault {
    pub fn new(key: SecretKey) -> CardVault {
        CardVault { key }
    }

    /// The command holding `card` (as written by the client) for `order_id`, sealed.
    pub fn hold(&self, order_id: &str, card: &str, now_ms: u64) -> Result<HoldCard, PaymentError> {
        let digits = CardNumber::parse(card)
            .map_err(|e| PaymentError::Invalid(e.to_string()))?
            .into_digits();
        let sealed = self
            .key
            .seal(digits.as_bytes())
            .map_err(|e| PaymentError::Inconsistent(e.to_string()))?;
        Ok(HoldCard {
            order_id: order_id.to_string(),
            sealed,
            held_until_ms: now_ms.saturating_add(HOLD_FOR_MS),
        })
    }

    /// The card held for `order_id`, digits only, if one is held and not expired.
    pub fn card_for(
        &self,
        store: &Store,
        order_id: &str,
        now_ms: u64,
    ) -> Result<Option<String>, PaymentError> {
        let Some(held) = store.get_json::<HeldCard>(HELD_CARDS, order_id)? else {
            return Ok(None);
        };
        if held.held_until_ms <= now_ms {
            return Ok(None);
        }
        let plain = self.key.open(&held.sealed).ok_or_else(|| {
            PaymentError::Inconsistent(format!(
                "the card held for order `{order_id}` does not open with this shard's card key"
            ))
        })?;
        String::from_utf8(plain)
            .map(Some)
            .map_err(|_| PaymentError::Inconsistent("a held card is not text".into()))
    }
}

/// Holds a sealed card for an order. Once the order has a payment (authorized, declined
/// or voided) its card is no longer needed, and is not kept.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HoldCard {
    order_id: String,
    sealed: Vec<u8>,
    held_until_ms: u64,
}

impl Command for HoldCard {
    type Output = ();
    type Error = StoreError;

    fn apply(&self, tx: &WriteTransaction) -> Result<(), StoreError> {
        if tx
            .open_table(PAYMENTS)?
            .get(self.order_id.as_str())?
            .is_some()
        {
            return Ok(());
        }
        let held = HeldCard {
            sealed: self.sealed.clone(),
            held_until_ms: self.held_until_ms,
        };
        tx.open_table(HELD_CARDS)?
            .insert(self.order_id.as_str(), store::encode(&held).as_slice())?;
        Ok(())
    }
}

/// Forgets the card held for `order_id`, if any: part of every command that decides a
/// payment.
pub fn forget(tx: &WriteTransaction, order_id: &str) -> Result<(), StoreError> {
    tx.open_table(HELD_CARDS)?.remove(order_id)?;
    Ok(())
}

/// Forgets every card whose hold ended by `now_ms`. Answers how many.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ForgetExpiredCards {
    pub now_ms: u64,
}

impl Command for ForgetExpiredCards {
    type Output = usize;
    type Error = StoreError;

    fn apply(&self, tx: &WriteTransaction) -> Result<usize, StoreError> {
        let mut held = tx.open_table(HELD_CARDS)?;
        let mut expired = Vec::new();
        for row in held.iter()? {
            let (order_id, value) = row?;
            let card: HeldCard = store::decode(value.value())?;
            if card.held_until_ms <= self.now_ms {
                expired.push(order_id.value().to_string());
            }
        }
        for order_id in &expired {
            held.remove(order_id.as_str())?;
        }
        Ok(expired.len())
    }
}

/// Forgets expired holds once a minute until `shutdown`.
pub fn spawn_expiry(store: Arc<Store>, shutdown: Shutdown) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(EXPIRY_SWEEP);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.wait() => return,
            }
            match store.submit(ForgetExpiredCards { now_ms: now_ms() }).await {
                Ok(0) => {}
                Ok(n) => tracing::info!(cards = n, "forgot cards whose hold expired"),
                Err(error) => tracing::error!(%error, "cannot forget expired cards; will retry"),
            }
        }
    });
}

/// How many cards are held.
#[cfg(test)]
fn held_count(store: &Store) -> Result<usize, StoreError> {
    Ok(store.scan_json::<serde_json::Value, _>(HELD_CARDS)?.len())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vault() -> (tempfile::TempDir, Store, CardVault) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("p.redb")).unwrap();
        (dir, store, CardVault::new(SecretKey::random().unwrap()))
    }

    #[test]
    fn a_held_card_opens_until_its_hold_ends_and_is_never_stored_in_the_clear() {
        let (dir, store, vault) = vault();
        let hold = vault.hold("ord-1", "4242 4242-4242 4242", 1_000).unwrap();
        store.submit_blocking(hold).unwrap();
        let card = vault.card_for(&store, "ord-1", 2_000).unwrap();
        assert_eq!(card.as_deref(), Some("4242424242424242"));
        let later = 1_000 + HOLD_FOR_MS;
        assert_eq!(vault.card_for(&store, "ord-1", later).unwrap(), None);
        drop(store);
        let file = std::fs::read(dir.path().join("p.redb")).unwrap();
        assert!(!file.windows(16).any(|w| w == b"4242424242424242"));
    }

    #[test]
    fn expired_holds_are_forgotten_and_others_kept() {
        let (_dir, store, vault) = vault();
        store
            .submit_blocking(vault.hold("old", "4242424242424242", 0).unwrap())
            .unwrap();
        store
            .submit_blocking(vault.hold("new", "4242424242424242", HOLD_FOR_MS).unwrap())
            .unwrap();
        let forgotten = store.submit_blocking(ForgetExpiredCards {
            now_ms: HOLD_FOR_MS,
        });
        assert_eq!(forgotten.unwrap(), 1);
        assert_eq!(held_count(&store).unwrap(), 1);
        assert!(vault
            .card_for(&store, "new", HOLD_FOR_MS)
            .unwrap()
            .is_some());
    }

    #[test]
    fn a_malformed_card_is_refused_before_anything_is_sealed() {
        let (_dir, _store, vault) = vault();
        for bad in ["12ab", "1234", &"1".repeat(20)] {
            assert!(
                matches!(vault.hold("o", bad, 0), Err(PaymentError::Invalid(_))),
                "{bad}"
            );
        }
    }
}
