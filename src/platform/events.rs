//! Events between roles: a transactional outbox, a relay, and an inbox.
//!
//! A producer calls [`append`] inside the same redb write transaction as the state change
//! the event reports, so the event exists if and only if the change does. The
//! [`OutboxRelay`] delivers every event at least once to each role that consumes its kind
//! (per the manifests), in sequence order, one subscriber cursor each, retrying with
//! backoff while the subscriber is down; a cursor only moves after a 2xx. The consumer
//! calls [`inbox_first_delivery`] inside the transaction of its effect, so a redelivered
//! event is recognised and dropped: at-least-once delivery, exactly-once effect.

use std::sync::Arc;
use std::time::Duration;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::client::{Call, ServiceClient};
use super::manifest::{Manifest, RoleCatalog};
use super::registry_api::now_ms;
use super::shutdown::Shutdown;
use super::store::{self, Store, StoreError};
use super::trace_context::{self, TraceContext};

/// Where consumers receive events.
pub const EVENTS_PATH: &str = "/v1/events";

const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("platform_outbox");
const OUTBOX_META: TableDefinition<&str, u64> = TableDefinition::new("platform_outbox_meta");
const NEXT_SEQ: &str = "next_seq";
const INBOX: TableDefinition<&str, u64> = TableDefinition::new("platform_inbox");

const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(5);
/// Backstop poll, in case a wake-up was missed.
const IDLE_POLL: Duration = Duration::from_secs(1);

/// One event, as stored in the outbox and as delivered to consumers.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct Event {
    /// Unique across the cluster: producer instance plus sequence.
    pub id: String,
    /// e.g. `order.confirmed`.
    pub kind: String,
    /// Producing instance id.
    pub producer: String,
    /// Position in the producer's outbox; delivery follows it.
    pub seq: u64,
    pub occurred_at_ms: u64,
    /// Trace of the request that caused the event, continued by the delivery.
    #[serde(default)]
    pub traceparent: Option<String>,
    pub payload: serde_json::Value,
}

/// Adds an event to the outbox inside the caller's transaction. `traceparent` is the
/// trace the delivery continues (pass the one of the work that caused the event).
pub fn append(
    tx: &WriteTransaction,
    producer: &str,
    kind: &str,
    payload: serde_json::Value,
    traceparent: Option<String>,
) -> Result<Event, StoreError> {
    let mut meta = tx.open_table(OUTBOX_META)?;
    let seq = meta.get(NEXT_SEQ)?.map(|v| v.value()).unwrap_or(1);
    meta.insert(NEXT_SEQ, seq + 1)?;
    let event = Event {
        id: format!("evt-{producer}-{seq}"),
        kind: kind.to_string(),
        producer: producer.to_string(),
        seq,
        occurred_at_ms: now_ms(),
        traceparent,
        payload,
    };
    tx.open_table(OUTBOX)?
        .insert(seq, store::encode(&event).as_slice())?;
    Ok(event)
}

/// Records that `event_id` is being handled, inside the transaction of its effect.
/// Returns `false` if it was handled before: the caller must then not apply it again.
pub fn inbox_first_delivery(tx: &WriteTransaction, event_id: &str) -> Result<bool, StoreError> {
    let mut inbox = tx.open_table(INBOX)?;
    if inbox.get(event_id)?.is_some() {
        return Ok(false);
    }
    inbox.insert(event_id, now_ms())?;
    Ok(true)
}

/// Wakes the relay after a transaction with events committed.
#[derive(Clone)]
pub struct OutboxSignal(Arc<watch::Sender<u64>>);

impl OutboxSignal {
    pub fn notify(&self) {
        self.0.send_modify(|n| *n = n.wrapping_add(1));
    }
}

/// Delivers the outbox of this instance to every subscribing role.
pub struct OutboxRelay {
    store: Arc<Store>,
    client: ServiceClient,
    /// (subscriber role, kinds it consumes) for each role consuming what we publish.
    subscribers: Vec<(String, Vec<String>)>,
    signal: OutboxSignal,
}

impl OutboxRelay {
    pub fn new(
        store: Arc<Store>,
        client: ServiceClient,
        catalog: &RoleCatalog,
        producer: &Manifest,
    ) -> OutboxRelay {
        let mut subscribers: Vec<(String, Vec<String>)> = Vec::new();
        for kind in &producer.publishes {
            for consumer in catalog.consumers_of(kind) {
                match subscribers.iter_mut().find(|(r, _)| r == &consumer.name) {
                    Some((_, kinds)) => kinds.push(kind.clone()),
                    None => subscribers.push((consumer.name.clone(), vec![kind.clone()])),
                }
            }
        }
        OutboxRelay {
            store,
            client,
            subscribers,
            signal: OutboxSignal(Arc::new(watch::channel(0).0)),
        }
    }

    pub fn signal(&self) -> OutboxSignal {
        self.signal.clone()
    }

    /// Starts one delivery loop per subscribing role.
    pub fn spawn(self, shutdown: Shutdown) {
        let relay = Arc::new(self);
        for (role, kinds) in relay.subscribers.clone() {
            let relay = relay.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = relay.deliver_forever(&role, &kinds) => {}
                    _ = shutdown.wait() => {}
                }
            });
        }
    }

    async fn deliver_forever(&self, role: &str, kinds: &[String]) {
        let mut wake = self.signal.0.subscribe();
        let mut retry = RETRY_MIN;
        loop {
            let next = match self.next_for(role, kinds) {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(subscriber = role, error = %e, "cannot read the outbox");
                    tokio::time::sleep(RETRY_MAX).await;
                    continue;
                }
            };
            let event = match next {
                Next::Deliver(event) => event,
                Next::Skip(seq) => {
                    // Only kinds this subscriber ignores: move past them.
                    if let Err(e) = self.advance(role, seq) {
                        tracing::error!(subscriber = role, error = %e, "cannot store the delivery cursor");
                    }
                    continue;
                }
                Next::Idle => {
                    wake.mark_unchanged();
                    let _ = tokio::time::timeout(IDLE_POLL, wake.changed()).await;
                    continue;
                }
            };
            match self.deliver(role, &event).await {
                Ok(()) => {
                    retry = RETRY_MIN;
                    if let Err(e) = self.advance(role, event.seq) {
                        tracing::error!(subscriber = role, error = %e, "cannot store the delivery cursor; the event will be delivered again");
                    }
                }
                Err(reason) => {
                    tracing::warn!(subscriber = role, event = %event.id, kind = %event.kind, %reason, retry_in = ?retry, "event delivery failed; will retry");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(RETRY_MAX);
                }
            }
        }
    }

    /// The first undelivered event of a kind `role` consumes.
    fn next_for(&self, role: &str, kinds: &[String]) -> Result<Next, StoreError> {
        let tx = self.store.db().begin_read()?;
        let cursor = match tx.open_table(OUTBOX_META) {
            Ok(meta) => meta
                .get(cursor_key(role).as_str())?
                .map(|v| v.value())
                .unwrap_or(0),
            Err(redb::TableError::TableDoesNotExist(_)) => 0,
            Err(e) => return Err(e.into()),
        };
        let outbox = match tx.open_table(OUTBOX) {
            Ok(t) => t,
            Err(redb::TableError::TableDoesNotExist(_)) => return Ok(Next::Idle),
            Err(e) => return Err(e.into()),
        };
        let mut skipped = None;
        for row in outbox.range(cursor + 1..)? {
            let (seq, bytes) = row?;
            let event: Event = store::decode(bytes.value())?;
            if kinds.contains(&event.kind) {
                return Ok(Next::Deliver(event));
            }
            skipped = Some(seq.value());
        }
        Ok(skipped.map_or(Next::Idle, Next::Skip))
    }

    async fn deliver(&self, role: &str, event: &Event) -> Result<(), String> {
        let ctx = event
            .traceparent
            .as_deref()
            .and_then(TraceContext::parse_traceparent)
            .unwrap_or_else(TraceContext::new_root);
        let body = serde_json::to_value(event).map_err(|e| e.to_string())?;
        let call = self.client.call(role, Call::post(EVENTS_PATH).json(&body));
        match trace_context::scope(ctx, call).await {
            Ok(res) if res.is_success() => Ok(()),
            Ok(res) => Err(format!(
                "subscriber answered {}: {}",
                res.status,
                String::from_utf8_lossy(&res.body)
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Moves `role`'s cursor past `seq` and drops rows every subscriber has passed.
    fn advance(&self, role: &str, seq: u64) -> Result<(), StoreError> {
        let tx = self.store.db().begin_write()?;
        {
            let mut meta = tx.open_table(OUTBOX_META)?;
            meta.insert(cursor_key(role).as_str(), seq)?;
            let mut low = u64::MAX;
            for (r, _) in &self.subscribers {
                let c = meta
                    .get(cursor_key(r).as_str())?
                    .map(|v| v.value())
                    .unwrap_or(0);
                low = low.min(c);
            }
            drop(meta);
            if low > 0 && low != u64::MAX {
                tx.open_table(OUTBOX)?.retain_in(..=low, |_, _| false)?;
            }
        }
        tx.commit()?;
        Ok(())
    }
}

enum Next {
    Deliver(Event),
    /// Nothing to deliver up to and including this sequence.
    Skip(u64),
    Idle,
}

fn cursor_key(role: &str) -> String {
    format!("cursor/{role}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn append_numbers_events_in_order_and_inbox_drops_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("e.redb")).unwrap();
        let tx = store.db().begin_write().unwrap();
        let a = append(
            &tx,
            "orders-0",
            "order.confirmed",
            serde_json::json!({"n": 1}),
            None,
        )
        .unwrap();
        let b = append(
            &tx,
            "orders-0",
            "order.cancelled",
            serde_json::json!({"n": 2}),
            None,
        )
        .unwrap();
        tx.commit().unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_ne!(a.id, b.id);

        let tx = store.db().begin_write().unwrap();
        assert!(inbox_first_delivery(&tx, &a.id).unwrap());
        assert!(!inbox_first_delivery(&tx, &a.id).unwrap());
        tx.commit().unwrap();
    }
}
