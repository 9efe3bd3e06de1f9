//! The order book: the orders role's redb tables and every transaction on them.
//!
//! Each change is one command ([`CreateOrder`], [`RecordStep`], [`RequestCancel`]),
//! applied in one write transaction: creating an order records its idempotency key
//! with it (so the same key can never create two orders, even concurrently), and the
//! step that ends a saga writes the final state and its event to the outbox together
//! (so the event exists exactly when the state does). Unfinished orders are indexed so a
//! restarted instance resumes them without scanning every order.

use std::sync::Arc;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use super::order::{Order, OrderRequest, Status, Step};
use svc_platform::clock::now_ms;
use svc_platform::events;
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

/// What makes two requests with the same key "the same request".
fn fingerprint(req: &OrderRequest) -> String {
    serde_json::json!({ "lines": req.lines, "card": req.card }).to_string()
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
}

impl OrderBook {
    pub fn new(store: Arc<Store>, shard: u32, producer: String) -> OrderBook {
        OrderBook {
            store,
            shard,
            producer,
        }
    }

    /// Stores a new `pending` order, or returns the one `key` created before. The id
    /// and time are decided here, before the command.
    pub async fn create(
        &self,
        req: OrderRequest,
        key: Option<&str>,
        traceparent: Option<String>,
    ) -> Result<Created, BookError> {
        self.store
            .submit(self.create_command(req, key, traceparent, now_ms()))
            .await
    }

    /// The command [`Self::create`] submits.
    pub fn create_command(
        &self,
        req: OrderRequest,
        key: Option<&str>,
        traceparent: Option<String>,
        now: u64,
    ) -> CreateOrder {
        let fingerprint = fingerprint(&req);
        CreateOrder {
            order: Order {
                id: format!(
                    "ord-{}-{}",
                    self.shard,
                    ulid::Ulid::new().to_string().to_lowercase()
                ),
                status: Status::Pending,
                step: Step::Reserve,
                lines: req.lines,
                total_minor: None,
                card: req.card,
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
        if record.fingerprint != fingerprint(req) {
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
        if order.status == Status::Cancelled {
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
