//! The order book: the orders role's redb tables and every transaction on them.
//!
//! Each change is one command ([`CreateOrder`], [`RecordStep`], [`RequestCancel`]),
//! applied in one write transaction: creating an order records its idempotency key
//! with it (so the same key can never create two orders, even concurrently), and the
//! step that ends a saga writes the final state and its event to the outbox together
//! (so the event exists exactly when the state does). Unfinished orders are indexed so a
//! restarted instance resumes them without scanning every order.
//!
//! No card number is stored here: payments holds the card until the payment is decided,
//! an order keeps its last four digits, and an idempotency key's fingerprint of its
//! request is a keyed hash (HMAC-SHA256 under a key in its own file beside the state
//! file), so it cannot be reversed by trying every card number. Rows written by earlier
//! versions, which held whole card numbers, are scrubbed at start ([`ScrubLegacyCards`]).

use std::sync::Arc;
use std::time::Duration;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::order::{Order, OrderRequest, Status, Step};
use svc_platform::clock::now_ms;
use svc_platform::events;
use svc_platform::secret_key::SecretKey;
use svc_platform::store::{self, Command, JsonTable, Store, StoreError};

const ORDERS: JsonTable = TableDefinition::new("orders");
const IDEMPOTENCY: JsonTable = TableDefinition::new("orders_idempotency");
/// Orders whose saga has not ended, by id.
const ACTIVE: TableDefinition<&str, u64> = TableDefinition::new("orders_active");

pub const EVENT_CONFIRMED: &str = "order.confirmed";
pub const EVENT_CANCELLED: &str = "order.cancelled";

#[derive(Debug, thiserror::Error)]
pub enum BookError {
    #[error("Idempotency-Key `{0}` was already used for a different order request")]
    KeyReused(String),
    #[error("no order `{0}`")]
    NotFound(String),
    /// A cancel of an order already confirmed.
    #[error("order `{0}` is confirmed and can no longer be cancelled")]
    AlreadyConfirmed(String),
    /// A cancel of an order at `commit` or later: a commit may be in flight.
    #[error("order `{0}` is being confirmed and can no longer be cancelled")]
    BeingConfirmed(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

svc_platform::store::redb_errors_into!(BookError);

/// What an idempotency key remembers: the order and the request that created it.
#[derive(Debug, Serialize, Deserialize)]
struct StoredKey {
    order_id: String,
    fingerprint: String,
}

/// A create's idempotency key and what makes a repeat "the same request".
#[derive(Debug, Serialize, Deserialize)]
struct KeyRecord {
    key: String,
    fingerprint: String,
}

/// What makes two requests with the same key "the same request", in the clear: what
/// versions before the card vault stored as the fingerprint, and what is keyed now.
fn request_identity(req: &OrderRequest) -> String {
    serde_json::json!({ "lines": req.lines, "card": req.card }).to_string()
}

/// A fingerprint as versions before the card vault stored it: the request in the clear.
fn is_legacy_fingerprint(fingerprint: &str) -> bool {
    fingerprint.starts_with('{')
}

pub enum Created {
    New(Order),
    /// The key was seen before: the order it created.
    Existing(Order),
}

#[derive(Clone)]
pub struct OrderBook {
    store: Arc<Store>,
    shard: u32,
    /// This instance's id: the producer named in events.
    producer: String,
    /// Keys the idempotency fingerprints.
    fingerprint_key: Arc<SecretKey>,
    /// Test hook ([`FAULT_CREATE_ANSWER_DELAY_ENV`]): a create's answer comes this late.
    create_answer_delay: Option<Duration>,
}

/// With this variable (a duration) in a build with fault hooks, the answer to a create
/// comes that long after its commit: as when the disk is slow, so a test can let the
/// request's deadline pass while its order is being written.
pub const FAULT_CREATE_ANSWER_DELAY_ENV: &str = "SVC_FAULT_ORDER_CREATE_ANSWER_DELAY";

impl OrderBook {
    pub fn new(
        store: Arc<Store>,
        shard: u32,
        producer: String,
        fingerprint_key: SecretKey,
    ) -> OrderBook {
        OrderBook {
            store,
            shard,
            producer,
            fingerprint_key: Arc::new(fingerprint_key),
            create_answer_delay: svc_platform::fault::delay(FAULT_CREATE_ANSWER_DELAY_ENV),
        }
    }

    /// A new order id of this shard: `ord-<shard>-<ulid>`, in creation order.
    pub fn new_order_id(&self) -> String {
        format!(
            "ord-{}-{}",
            self.shard,
            ulid::Ulid::new().to_string().to_lowercase()
        )
    }

    /// What makes two requests with the same key "the same request", keyed.
    fn fingerprint(&self, req: &OrderRequest) -> String {
        self.fingerprint_key
            .keyed_hash(request_identity(req).as_bytes())
    }

    /// Stores a new `pending` order `id`, or returns the one `key` created before. The
    /// time is decided here, before the command.
    pub async fn create(
        &self,
        id: String,
        req: OrderRequest,
        key: Option<&str>,
        traceparent: Option<String>,
    ) -> Result<Created, BookError> {
        let created = self
            .store
            .submit(self.create_command(id, req, key, traceparent, now_ms()))
            .await;
        if let Some(delay) = self.create_answer_delay {
            tokio::time::sleep(delay).await;
        }
        created
    }

    /// The command [`Self::create`] submits.
    pub fn create_command(
        &self,
        id: String,
        req: OrderRequest,
        key: Option<&str>,
        traceparent: Option<String>,
        now: u64,
    ) -> CreateOrder {
        let fingerprint = self.fingerprint(&req);
        let card_last4 = req.card_last4();
        CreateOrder {
            order: Order {
                id,
                status: Status::Pending,
                step: Step::Reserve,
                lines: req.lines,
                total_minor: None,
                card_on_file: card_last4.is_some(),
                card_last4,
                legacy_card: None,
                reason: None,
                cancel_requested: false,
                created_at_ms: now,
                updated_at_ms: now,
                traceparent,
            },
            key: key.map(|k| KeyRecord {
                key: k.to_string(),
                fingerprint,
            }),
        }
    }

    /// The order an idempotency key created, if the key is known. A key reused with a
    /// different request is an error.
    pub fn order_for_key(
        &self,
        req: &OrderRequest,
        key: Option<&str>,
    ) -> Result<Option<Order>, BookError> {
        let Some(key) = key else { return Ok(None) };
        let Some(record) = self.store.get_json::<StoredKey>(IDEMPOTENCY, key)? else {
            return Ok(None);
        };
        if record.fingerprint != self.fingerprint(req) {
            return Err(BookError::KeyReused(key.to_string()));
        }
        self.get(&record.order_id)?
            .map(Some)
            .ok_or(BookError::NotFound(record.order_id))
    }

    pub fn get(&self, id: &str) -> Result<Option<Order>, StoreError> {
        self.store.get_json(ORDERS, id)
    }

    /// Orders in id (= creation) order, after `after`, at most `limit`; and the cursor
    /// of the next page if there is one.
    pub fn list(
        &self,
        after: Option<&str>,
        limit: usize,
    ) -> Result<(Vec<Order>, Option<String>), StoreError> {
        let tx = self.store.begin_read()?;
        let orders = match tx.open_table(ORDERS) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok((Vec::new(), None)),
            Err(e) => return Err(e.into()),
        };
        let mut page = Vec::new();
        let range = match after {
            Some(a) => {
                orders.range::<&str>((std::ops::Bound::Excluded(a), std::ops::Bound::Unbounded))?
            }
            None => orders.range::<&str>(..)?,
        };
        for row in range {
            let (_, v) = row?;
            if page.len() == limit {
                let next = page.last().map(|o: &Order| o.id.clone());
                return Ok((page, next));
            }
            page.push(store::decode(v.value())?);
        }
        Ok((page, None))
    }

    /// Ids of every order whose saga has not ended.
    pub fn unfinished(&self) -> Result<Vec<String>, StoreError> {
        let tx = self.store.begin_read()?;
        let active = match tx.open_table(ACTIVE) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Vec::new()),
            Err(e) => return Err(e.into()),
        };
        let mut ids = Vec::new();
        for row in active.iter()? {
            ids.push(row?.0.value().to_string());
        }
        Ok(ids)
    }

    /// Stores the order after a saga step (see [`RecordStep`]). Returns whether an
    /// event was written.
    pub async fn save_step(&self, next: &Order) -> Result<bool, StoreError> {
        let command = RecordStep {
            next: next.clone(),
            producer: self.producer.clone(),
        };
        self.store.submit(command).await
    }

    /// Marks a pending order for cancellation; the saga honours it before commit.
    pub async fn request_cancel(&self, id: &str) -> Result<Order, BookError> {
        let command = RequestCancel {
            id: id.to_string(),
            now_ms: now_ms(),
        };
        self.store.submit(command).await
    }
}

impl OrderBook {
    /// Scrubs the card numbers that versions before the card vault stored (see the
    /// module doc): fingerprints are keyed, ended orders forget their card. An order still
    /// running keeps its card until it ends (its authorization may still need it).
    /// Answers how many rows changed; runs once per state file.
    pub fn scrub_legacy_cards(&self) -> Result<usize, StoreError> {
        let tx = self.store.begin_read()?;
        if let Some(meta) = store::open_if_exists(&tx, META)? {
            if meta.get(LEGACY_CARDS_SCRUBBED)?.is_some() {
                return Ok(0);
            }
        }
        let mut scrub = ScrubLegacyCards::default();
        if let Some(keys) = store::open_if_exists(&tx, IDEMPOTENCY)? {
            for row in keys.iter()? {
                let (key, value) = row?;
                let record: StoredKey = store::decode(value.value())?;
                if is_legacy_fingerprint(&record.fingerprint) {
                    let keyed = self
                        .fingerprint_key
                        .keyed_hash(record.fingerprint.as_bytes());
                    scrub.fingerprints.push((key.value().to_string(), keyed));
                }
            }
        }
        if let Some(orders) = store::open_if_exists(&tx, ORDERS)? {
            for row in orders.iter()? {
                let (id, value) = row?;
                let order: Order = store::decode(value.value())?;
                if order.legacy_card.is_some() && order.is_final() {
                    scrub.ended_orders.push(id.value().to_string());
                }
            }
        }
        drop(tx);
        self.store.submit_blocking(scrub)
    }
}

const META: TableDefinition<&str, u64> = TableDefinition::new("orders_meta");
const LEGACY_CARDS_SCRUBBED: &str = "legacy_cards_scrubbed";

/// Replaces fingerprints in the clear with their keyed hash (computed before, from the
/// clear text) and rewrites ended orders without their card; then marks the file done.
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct ScrubLegacyCards {
    /// (idempotency key, keyed fingerprint)
    fingerprints: Vec<(String, String)>,
    ended_orders: Vec<String>,
}

impl Command for ScrubLegacyCards {
    type Output = usize;
    type Error = StoreError;

    fn apply(&self, tx: &WriteTransaction) -> Result<usize, StoreError> {
        let mut keys = tx.open_table(IDEMPOTENCY)?;
        let mut changed = 0;
        for (key, keyed) in &self.fingerprints {
            let Some(found) = keys.get(key.as_str())?.map(|v| v.value().to_vec()) else {
                continue;
            };
            let mut record: StoredKey = store::decode(&found)?;
            if is_legacy_fingerprint(&record.fingerprint) {
                record.fingerprint = keyed.clone();
                keys.insert(key.as_str(), store::encode(&record).as_slice())?;
                changed += 1;
            }
        }
        let mut orders = tx.open_table(ORDERS)?;
        for id in &self.ended_orders {
            let Some(found) = orders.get(id.as_str())?.map(|v| v.value().to_vec()) else {
                continue;
            };
            // Decoding reads the old card; encoding never writes it.
            let order: Order = store::decode(&found)?;
            orders.insert(id.as_str(), store::encode(&order).as_slice())?;
            changed += 1;
        }
        tx.open_table(META)?.insert(LEGACY_CARDS_SCRUBBED, 1)?;
        Ok(changed)
    }
}

/// Stores a new order with its idempotency key, or finds the order the key made before.
#[derive(Debug, Serialize, Deserialize)]
pub struct CreateOrder {
    order: Order,
    key: Option<KeyRecord>,
}

impl Command for CreateOrder {
    type Output = Created;
    type Error = BookError;

    fn apply(&self, tx: &WriteTransaction) -> Result<Created, BookError> {
        let mut orders = tx.open_table(ORDERS)?;
        let mut keys = tx.open_table(IDEMPOTENCY)?;
        if let Some(key) = &self.key {
            if let Some(found) = keys.get(key.key.as_str())? {
                let record: StoredKey = store::decode(found.value())?;
                if record.fingerprint != key.fingerprint {
                    return Err(BookError::KeyReused(key.key.clone()));
                }
                let order = orders
                    .get(record.order_id.as_str())?
                    .map(|v| store::decode::<Order>(v.value()))
                    .transpose()?
                    .ok_or_else(|| BookError::NotFound(record.order_id.clone()))?;
                return Ok(Created::Existing(order));
            }
        }
        let order = &self.order;
        orders.insert(order.id.as_str(), store::encode(order).as_slice())?;
        if let Some(key) = &self.key {
            let record = StoredKey {
                order_id: order.id.clone(),
                fingerprint: key.fingerprint.clone(),
            };
            keys.insert(key.key.as_str(), store::encode(&record).as_slice())?;
        }
        tx.open_table(ACTIVE)?
            .insert(order.id.as_str(), order.created_at_ms)?;
        Ok(Created::New(order.clone()))
    }
}

/// Stores the order after a saga step. A cancel request that arrived meanwhile is kept;
/// an order that became final leaves the active index and gets its event, all in the
/// same transaction. Answers whether an event was written.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecordStep {
    next: Order,
    /// This instance: the producer named in the event.
    producer: String,
}

impl Command for RecordStep {
    type Output = bool;
    type Error = StoreError;

    fn apply(&self, tx: &WriteTransaction) -> Result<bool, StoreError> {
        let mut orders = tx.open_table(ORDERS)?;
        let mut next = self.next.clone();
        if let Some(stored) = orders.get(next.id.as_str())? {
            let stored: Order = store::decode(stored.value())?;
            if stored.is_final() {
                // Another driver got there first; never end a saga twice.
                return Ok(false);
            }
            next = next.with_cancel_request_of(&stored);
        }
        orders.insert(next.id.as_str(), store::encode(&next).as_slice())?;
        drop(orders);
        if !next.is_final() {
            return Ok(false);
        }
        tx.open_table(ACTIVE)?.remove(next.id.as_str())?;
        let kind = match next.status {
            Status::Confirmed => EVENT_CONFIRMED,
            _ => EVENT_CANCELLED,
        };
        let payload = serde_json::json!({
            "order_id": next.id,
            "status": next.status,
            "total_minor": next.total_minor,
            "reason": next.reason,
            "lines": next.lines,
        });
        // Keyed by the order: a sharded subscriber records it on the shard that readers
        // of this order ask.
        let context = events::EventContext {
            occurred_at_ms: next.updated_at_ms,
            traceparent: next.traceparent.clone(),
            key: Some(next.id.clone()),
        };
        events::append(tx, &self.producer, kind, payload, context)?;
        Ok(true)
    }
}

/// Marks a pending order for cancellation; the saga honours it before commit.
#[derive(Debug, Serialize, Deserialize)]
pub struct RequestCancel {
    id: String,
    now_ms: u64,
}

impl Command for RequestCancel {
    type Output = Order;
    type Error = BookError;

    fn apply(&self, tx: &WriteTransaction) -> Result<Order, BookError> {
        let id = self.id.as_str();
        let mut orders = tx.open_table(ORDERS)?;
        let mut order: Order = match orders.get(id)? {
            Some(v) => store::decode(v.value())?,
            None => return Err(BookError::NotFound(id.to_string())),
        };
        // Cancelled, or being cancelled already (a refusal, or an earlier cancel): the
        // cancel changes nothing, and the order says what will happen.
        if order.status == Status::Cancelled || order.step == Step::Compensate {
            return Ok(order);
        }
        if order.status == Status::Confirmed {
            return Err(BookError::AlreadyConfirmed(id.to_string()));
        }
        if !order.cancellable() {
            return Err(BookError::BeingConfirmed(id.to_string()));
        }
        order.cancel_requested = true;
        order.updated_at_ms = self.now_ms;
        orders.insert(id, store::encode(&order).as_slice())?;
        Ok(order)
    }
}

#[cfg(test)]
mod tests {
    use super::super::order::NewOrder;
    use super::super::testing::orders;
    use super::*;

    /// Writes rows as versions before the card vault did: `(table, key, JSON)`.
    #[derive(Debug, Serialize, Deserialize)]
    struct WriteLegacyRows(Vec<(String, String, String)>);

    impl Command for WriteLegacyRows {
        type Output = ();
        type Error = StoreError;

        fn apply(&self, tx: &WriteTransaction) -> Result<(), StoreError> {
            for (table, key, json) in &self.0 {
                let table = if table == "orders" {
                    ORDERS
                } else {
                    IDEMPOTENCY
                };
                tx.open_table(table)?
                    .insert(key.as_str(), json.as_bytes())?;
            }
            Ok(())
        }
    }

    const CARD: &str = "4242424242424242";

    fn legacy_order(id: &str, status: &str) -> String {
        serde_json::json!({
            "id": id, "status": status, "step": if status == "pending" { "authorize" } else { "done" },
            "lines": [{ "sku": "tea", "quantity": 1 }], "total_minor": 450, "card": CARD,
            "reason": null, "cancel_requested": false, "created_at_ms": 1, "updated_at_ms": 1,
        })
        .to_string()
    }

    #[test]
    fn card_numbers_left_by_earlier_versions_are_scrubbed_once() {
        let orders = orders();
        let request: OrderRequest = serde_json::from_value::<NewOrder>(serde_json::json!({
            "lines": [{ "sku": "tea", "quantity": 1 }], "card": CARD
        }))
        .unwrap()
        .parse()
        .unwrap();
        let clear = StoredKey {
            order_id: "ord-0-ended".into(),
            fingerprint: request_identity(&request),
        };
        let rows = WriteLegacyRows(vec![
            (
                "orders".into(),
                "ord-0-ended".into(),
                legacy_order("ord-0-ended", "confirmed"),
            ),
            (
                "orders".into(),
                "ord-0-running".into(),
                legacy_order("ord-0-running", "pending"),
            ),
            (
                "keys".into(),
                "k1".into(),
                serde_json::to_string(&clear).unwrap(),
            ),
        ]);
        orders.book.store.submit_blocking(rows).unwrap();

        assert_eq!(orders.book.scrub_legacy_cards().unwrap(), 2);
        let ended = orders.book.get("ord-0-ended").unwrap().unwrap();
        assert_eq!(ended.legacy_card, None);
        // A running order keeps its card until it ends: its authorization needs it.
        let running = orders.book.get("ord-0-running").unwrap().unwrap();
        assert_eq!(running.legacy_card.as_deref(), Some(CARD));
        // The keyed fingerprint still recognises the same request, and only it.
        let found = orders.book.order_for_key(&request, Some("k1")).unwrap();
        assert_eq!(found.map(|o| o.id).as_deref(), Some("ord-0-ended"));
        let mut other = request.clone();
        other.card = Some("4242424242424243".into());
        assert!(matches!(
            orders.book.order_for_key(&other, Some("k1")),
            Err(BookError::KeyReused(_))
        ));
        let keys = orders
            .book
            .store
            .scan_json::<StoredKey, _>(IDEMPOTENCY)
            .unwrap();
        assert!(
            !keys[0].fingerprint.contains(CARD),
            "{}",
            keys[0].fingerprint
        );
        assert_eq!(
            orders.book.scrub_legacy_cards().unwrap(),
            0,
            "once per file"
        );
    }
}
