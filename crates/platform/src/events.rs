//! Events between roles: a transactional outbox, a relay, and an inbox.
//!
//! A producer calls [`append`] inside the same redb write transaction as the state change
//! the event reports, so the event exists if and only if the change does. The
//! [`OutboxRelay`] delivers every event at least once to each role that consumes its kind
//! (per the manifests), in sequence order, one subscriber cursor each, retrying with
//! backoff while the subscriber is down; a cursor only moves after a 2xx. The consumer
//! calls [`inbox_first_delivery`] inside the transaction of its effect, so a redelivered
//! event is recognised and dropped: at-least-once delivery, exactly-once effect.
//!
//! A sharded subscriber gets each event on one shard only, the one owning the event's
//! `key` (`fnv1a64(key) % shards(role)`, e.g. the order id), so an order's events are
//! recorded once and found where a reader of that order looks. The relay runs one loop
//! and one cursor per (subscriber role, shard): a shard that is down delays only its
//! own events.

use std::sync::Arc;
use std::time::Duration;

use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;

use super::backoff::Backoff;
use super::client::{Call, ServiceClient};
use super::manifest::{Manifest, RoleCatalog};
use super::shards::{shard_for_key, Misdirected, ShardCounts, ShardOwnership};
use super::shutdown::Shutdown;
use super::store::{self, Store, StoreError};
use super::trace_context::{self, TraceContext};

/// Where consumers receive events.
pub const EVENTS_PATH: &str = "/v1/events";

const OUTBOX: TableDefinition<u64, &[u8]> = TableDefinition::new("platform_outbox");
const OUTBOX_META: TableDefinition<&str, u64> = TableDefinition::new("platform_outbox_meta");
const NEXT_SEQ: &str = "next_seq";
const INBOX: TableDefinition<&str, u64> = TableDefinition::new("platform_inbox");

/// Pause between deliveries to a subscriber that keeps failing.
const RETRY: Backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
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
    /// What the event is about (e.g. the order id): decides the subscriber's shard.
    /// Without one, the event goes to shard 0.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
    pub payload: serde_json::Value,
}

impl Event {
    /// The shard, of a subscriber with `shards` of them, that gets this event: the one
    /// owning its key, or shard 0 for an event without one.
    fn shard(&self, shards: u32) -> u32 {
        self.key
            .as_deref()
            .map_or(0, |key| shard_for_key(key, shards))
    }
}

/// For a sharded consumer: refuses (421) an event the relay delivers to another shard,
/// which a misrouted delivery would otherwise record where no reader of its key looks.
pub fn check_delivery(ownership: &ShardOwnership, event: &Event) -> Result<(), Misdirected> {
    let key = event.key.as_deref().unwrap_or("");
    let owner = event.shard(ownership.count());
    ownership.check_owner("event key", key, owner)
}

/// What [`append`] adds besides its kind and payload.
#[derive(Debug, Clone, Default)]
pub struct EventContext {
    /// When it happened, decided by the command that appends it (applying a command
    /// never reads the clock).
    pub occurred_at_ms: u64,
    /// The trace the delivery continues (the one of the work that caused the event).
    pub traceparent: Option<String>,
    /// The entity the event is about; picks the subscriber's shard.
    pub key: Option<String>,
}

/// Adds an event to the outbox inside the caller's transaction.
pub fn append(
    tx: &WriteTransaction,
    producer: &str,
    kind: &str,
    payload: serde_json::Value,
    context: EventContext,
) -> Result<Event, StoreError> {
    let mut meta = tx.open_table(OUTBOX_META)?;
    let seq = meta.get(NEXT_SEQ)?.map(|v| v.value()).unwrap_or(1);
    meta.insert(NEXT_SEQ, seq + 1)?;
    let event = Event {
        id: format!("evt-{producer}-{seq}"),
        kind: kind.to_string(),
        producer: producer.to_string(),
        seq,
        occurred_at_ms: context.occurred_at_ms,
        traceparent: context.traceparent,
        key: context.key,
        payload,
    };
    tx.open_table(OUTBOX)?
        .insert(seq, store::encode(&event).as_slice())?;
    Ok(event)
}

/// Records that `event_id` is being handled (received at `at_ms`), inside the
/// transaction of its effect. Returns `false` if it was handled before: the caller must
/// then not apply it again.
pub fn inbox_first_delivery(
    tx: &WriteTransaction,
    event_id: &str,
    at_ms: u64,
) -> Result<bool, StoreError> {
    let mut inbox = tx.open_table(INBOX)?;
    if inbox.get(event_id)?.is_some() {
        return Ok(false);
    }
    inbox.insert(event_id, at_ms)?;
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

/// One delivery stream: a subscribing role, or one shard of a sharded one.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Subscriber {
    role: String,
    kinds: Vec<String>,
    /// `Some` for a stateful role: this stream's shard of `shards` in all.
    shard: Option<(u32, u32)>,
}

impl Subscriber {
    /// Whether `event` is this stream's to deliver.
    fn wants(&self, event: &Event) -> bool {
        self.kinds.contains(&event.kind)
            && self
                .shard
                .is_none_or(|(shard, shards)| event.shard(shards) == shard)
    }

    /// Where its cursor is stored. An unsharded or single-shard stream keeps the key
    /// it had before shards existed, so an upgrade delivers nothing twice.
    fn cursor_key(&self) -> String {
        match self.shard {
            Some((shard, shards)) if shards > 1 => format!("cursor/{}/{shard}", self.role),
            _ => format!("cursor/{}", self.role),
        }
    }

    fn label(&self) -> String {
        match self.shard {
            Some((shard, _)) => format!("{}#{shard}", self.role),
            None => self.role.clone(),
        }
    }
}

/// The delivery streams of what `producer` publishes: one per subscribing role, or one
/// per shard of a stateful subscribing role.
fn subscribers(
    catalog: &RoleCatalog,
    producer: &Manifest,
    shards: &ShardCounts,
) -> Vec<Subscriber> {
    let mut by_role: Vec<(&Manifest, Vec<String>)> = Vec::new();
    for kind in &producer.publishes {
        for consumer in catalog.consumers_of(kind) {
            match by_role.iter_mut().find(|(m, _)| m.name == consumer.name) {
                Some((_, kinds)) => kinds.push(kind.clone()),
                None => by_role.push((consumer, vec![kind.clone()])),
            }
        }
    }
    let mut out = Vec::new();
    for (manifest, kinds) in by_role {
        if manifest.stateful {
            let count = shards.count(&manifest.name);
            out.extend((0..count).map(|shard| Subscriber {
                role: manifest.name.clone(),
                kinds: kinds.clone(),
                shard: Some((shard, count)),
            }));
        } else {
            out.push(Subscriber {
                role: manifest.name.clone(),
                kinds,
                shard: None,
            });
        }
    }
    out
}

/// Delivers the outbox of this instance to every subscribing role.
pub struct OutboxRelay {
    store: Arc<Store>,
    client: ServiceClient,
    subscribers: Vec<Subscriber>,
    signal: OutboxSignal,
}

impl OutboxRelay {
    pub fn new(
        store: Arc<Store>,
        client: ServiceClient,
        catalog: &RoleCatalog,
        producer: &Manifest,
        shards: &ShardCounts,
    ) -> OutboxRelay {
        OutboxRelay {
            store,
            client,
            subscribers: subscribers(catalog, producer, shards),
            signal: OutboxSignal(Arc::new(watch::channel(0).0)),
        }
    }

    pub fn signal(&self) -> OutboxSignal {
        self.signal.clone()
    }

    /// Starts one delivery loop per subscriber stream.
    pub fn spawn(self, shutdown: Shutdown) {
        let relay = Arc::new(self);
        for subscriber in relay.subscribers.clone() {
            let relay = relay.clone();
            let shutdown = shutdown.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = relay.deliver_forever(&subscriber) => {}
                    _ = shutdown.wait() => {}
                }
            });
        }
    }

    async fn deliver_forever(&self, sub: &Subscriber) {
        let mut wake = self.signal.0.subscribe();
        // Failed deliveries in a row, for the backoff.
        let mut failures = 0u32;
        let role = sub.label();
        let role = role.as_str();
        loop {
            let next = match self.next_for(sub) {
                Ok(next) => next,
                Err(e) => {
                    tracing::error!(subscriber = role, error = %e, "cannot read the outbox");
                    tokio::time::sleep(RETRY.max()).await;
                    continue;
                }
            };
            let event = match next {
                Next::Deliver(event) => event,
                Next::Skip(seq) => {
                    // Only kinds this subscriber ignores: move past them.
                    if let Err(e) = self.advance(sub, seq).await {
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
            match self.deliver(sub, &event).await {
                Ok(()) => {
                    failures = 0;
                    if let Err(e) = self.advance(sub, event.seq).await {
                        tracing::error!(subscriber = role, error = %e, "cannot store the delivery cursor; the event will be delivered again");
                    }
                }
                Err(reason) => {
                    failures = failures.saturating_add(1);
                    let retry = RETRY.delay(failures, &mut rand::rng());
                    tracing::warn!(subscriber = role, event = %event.id, kind = %event.kind, %reason, retry_in = ?retry, "event delivery failed; will retry");
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }

    /// The first undelivered event for `sub`.
    fn next_for(&self, sub: &Subscriber) -> Result<Next, StoreError> {
        let tx = self.store.begin_read()?;
        let cursor = match tx.open_table(OUTBOX_META) {
            Ok(meta) => meta
                .get(sub.cursor_key().as_str())?
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
            if sub.wants(&event) {
                return Ok(Next::Deliver(event));
            }
            skipped = Some(seq.value());
        }
        Ok(skipped.map_or(Next::Idle, Next::Skip))
    }

    async fn deliver(&self, sub: &Subscriber, event: &Event) -> Result<(), String> {
        let ctx = event
            .traceparent
            .as_deref()
            .and_then(TraceContext::parse_traceparent)
            .unwrap_or_else(TraceContext::new_root);
        let body = serde_json::to_value(event).map_err(|e| e.to_string())?;
        // The consumer's inbox drops a repeated event: delivery is safe to repeat.
        let mut call = Call::post(EVENTS_PATH).json(&body).idempotent();
        if let Some((shard, _)) = sub.shard {
            call = call.shard(shard);
        }
        let call = self.client.call(&sub.role, call);
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

    /// Moves `sub`'s cursor past `seq` and drops rows every subscriber has passed.
    async fn advance(&self, sub: &Subscriber, seq: u64) -> Result<(), StoreError> {
        let command = AdvanceCursor {
            cursor: sub.cursor_key(),
            seq,
            every_cursor: self
                .subscribers
                .iter()
                .map(Subscriber::cursor_key)
                .collect(),
        };
        self.store.submit(command).await
    }
}

/// Moves one delivery cursor and drops the outbox rows every cursor has passed. Not
/// synced on its own: a cursor lost by a crash only means events delivered again, which
/// the consumers' inboxes drop.
#[derive(Serialize, Deserialize)]
struct AdvanceCursor {
    cursor: String,
    seq: u64,
    every_cursor: Vec<String>,
}

impl store::Command for AdvanceCursor {
    type Output = ();
    type Error = StoreError;

    fn apply(&self, tx: &WriteTransaction) -> Result<(), StoreError> {
        let mut meta = tx.open_table(OUTBOX_META)?;
        meta.insert(self.cursor.as_str(), self.seq)?;
        let mut low = u64::MAX;
        for other in &self.every_cursor {
            let c = meta.get(other.as_str())?.map(|v| v.value()).unwrap_or(0);
            low = low.min(c);
        }
        drop(meta);
        if low > 0 && low != u64::MAX {
            tx.open_table(OUTBOX)?.retain_in(..=low, |_, _| false)?;
        }
        Ok(())
    }

    fn durability(&self) -> store::Durability {
        store::Durability::Deferred
    }
}

enum Next {
    Deliver(Event),
    /// Nothing to deliver up to and including this sequence.
    Skip(u64),
    Idle,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Appends two events, then offers the first one's id to the inbox twice.
    #[derive(Serialize, Deserialize)]
    struct AppendTwice;

    impl store::Command for AppendTwice {
        type Output = (Event, Event, bool, bool);
        type Error = StoreError;
        fn apply(&self, tx: &WriteTransaction) -> Result<Self::Output, StoreError> {
            let context = EventContext {
                occurred_at_ms: 42,
                ..EventContext::default()
            };
            let a = append(
                tx,
                "orders-0",
                "order.confirmed",
                serde_json::json!({"n": 1}),
                context.clone(),
            )?;
            let b = append(
                tx,
                "orders-0",
                "order.cancelled",
                serde_json::json!({"n": 2}),
                context,
            )?;
            let first = inbox_first_delivery(tx, &a.id, 42)?;
            let again = inbox_first_delivery(tx, &a.id, 43)?;
            Ok((a, b, first, again))
        }
    }

    #[test]
    fn append_numbers_events_in_order_and_inbox_drops_duplicates() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("e.redb")).unwrap();
        let (a, b, first, again) = store.submit_blocking(AppendTwice).unwrap();
        assert_eq!((a.seq, b.seq), (1, 2));
        assert_ne!(a.id, b.id);
        assert_eq!(a.occurred_at_ms, 42, "the time comes from the command");
        assert!(first && !again);
    }

    fn manifest(name: &str, stateful: bool, publishes: &[&str], consumes: &[&str]) -> Manifest {
        Manifest {
            name: name.into(),
            description: String::new(),
            port: 0,
            stateful,
            registers: true,
            calls: Vec::new(),
            publishes: publishes.iter().map(|s| s.to_string()).collect(),
            consumes: consumes.iter().map(|s| s.to_string()).collect(),
            endpoints: Default::default(),
            public: false,
        }
    }

    fn event(kind: &str, key: Option<&str>) -> Event {
        Event {
            id: "evt-1".into(),
            kind: kind.into(),
            producer: "orders-0".into(),
            seq: 1,
            occurred_at_ms: 0,
            traceparent: None,
            key: key.map(str::to_string),
            payload: serde_json::Value::Null,
        }
    }

    #[test]
    fn a_sharded_subscriber_gets_each_event_on_exactly_one_shard() {
        let producer = manifest("orders", true, &["order.confirmed"], &[]);
        let catalog = RoleCatalog::new(vec![
            producer.clone(),
            manifest("notifications", true, &[], &["order.confirmed"]),
            manifest("audit", false, &[], &["order.confirmed"]),
        ])
        .unwrap();
        let shards = ShardCounts::parse_list(&["notifications=3".into()]).unwrap();
        let subs = subscribers(&catalog, &producer, &shards);
        let labels: Vec<String> = subs.iter().map(Subscriber::label).collect();
        assert_eq!(
            labels,
            [
                "notifications#0",
                "notifications#1",
                "notifications#2",
                "audit"
            ]
        );
        for key in ["ord-0-a", "ord-1-b", "ord-0-c", "x"] {
            let e = event("order.confirmed", Some(key));
            let takers: Vec<String> = subs[..3]
                .iter()
                .filter(|s| s.wants(&e))
                .map(Subscriber::label)
                .collect();
            assert_eq!(takers.len(), 1, "{key}: {takers:?}");
            assert!(subs[3].wants(&e), "an unsharded subscriber gets everything");
        }
        assert!(
            subs[0].wants(&event("order.confirmed", None)),
            "no key: shard 0"
        );
        assert!(!subs[0].wants(&event("order.shipped", Some("ord-0-a"))));
    }

    #[test]
    fn a_consumer_shard_accepts_exactly_what_the_relay_sends_it() {
        let producer = manifest("orders", true, &["order.confirmed"], &[]);
        let catalog = RoleCatalog::new(vec![
            producer.clone(),
            manifest("notifications", true, &[], &["order.confirmed"]),
        ])
        .unwrap();
        let shards = ShardCounts::parse_list(&["notifications=3".into()]).unwrap();
        let subs = subscribers(&catalog, &producer, &shards);
        for key in [Some("ord-0-a"), Some("ord-1-b"), Some("x"), None] {
            let e = event("order.confirmed", key);
            for (shard, sub) in (0..).zip(&subs) {
                let own = ShardOwnership::new("notifications", shard, shards.clone());
                let accepted = check_delivery(&own, &e);
                assert_eq!(accepted.is_ok(), sub.wants(&e), "{key:?} at {shard}");
                if let Err(m) = accepted {
                    assert_eq!(m.owner, e.shard(3), "names the right shard");
                }
            }
        }
    }

    #[test]
    fn one_shard_keeps_the_cursor_key_of_before_shards() {
        let producer = manifest("orders", true, &["order.confirmed"], &[]);
        let catalog = RoleCatalog::new(vec![
            producer.clone(),
            manifest("notifications", true, &[], &["order.confirmed"]),
        ])
        .unwrap();
        let one = subscribers(&catalog, &producer, &ShardCounts::default());
        assert_eq!(one.len(), 1);
        assert_eq!(one[0].cursor_key(), "cursor/notifications");
    }
}
