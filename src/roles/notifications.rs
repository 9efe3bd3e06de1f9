//! The notifications role: records one notification per order and event it consumes.
//!
//! Events arrive from the orders outbox at least once; [`RecordNotification`] stores the
//! notification and the event id (in the platform inbox) in one transaction, so a
//! redelivered event is recognised and leaves exactly one notification.
//!
//! With several shards, the relay sends an order's events to the shard its order id
//! hashes to (`fnv1a64(order id) % shards(notifications)`), and the gateway reads an
//! order's notifications there: each shard holds the notifications of its orders. An
//! event for another shard is refused with 421 (`events::check_delivery`), so it is
//! never recorded where no reader of its order looks.

use std::sync::Arc;

use actix_web::{web, HttpResponse};
use redb::{ReadableTable, TableDefinition, WriteTransaction};
use serde::{Deserialize, Serialize};

use svc_platform::clock::now_ms;
use svc_platform::events::{self, Event, EVENTS_PATH};
use svc_platform::ids;
use svc_platform::problem::Problem;
use svc_platform::role::{RoleContext, Routes};
use svc_platform::shards::ShardOwnership;
use svc_platform::telemetry::Verdict;
use svc_platform::trace_context::TraceContext;

use super::RoleEntry;
use svc_platform::store::{self, Command, JsonTable, Store, StoreError};

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../roles/notifications.yaml"),
    // No settings of its own.
    start: |ctx, _| start(ctx),
};

/// Keyed by `<order id>/<event kind>`: one notification per order and event, and an
/// order's notifications side by side (no order id contains `/`), so reading them is one
/// short range, not a scan ([`notifications_of`]).
const NOTIFICATIONS: JsonTable = TableDefinition::new("notifications");

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Notification {
    pub order_id: String,
    pub kind: String,
    pub event_id: String,
    pub message: String,
    pub created_at_ms: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum NotifyError {
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The order fields a notification needs from the event payload.
#[derive(Debug, Deserialize)]
struct OrderEvent {
    order_id: String,
    #[serde(default)]
    total_minor: Option<u64>,
    #[serde(default)]
    reason: Option<String>,
}

/// The notification `event` asks for, received at `now_ms`, as the command that records
/// it; an event this role does not consume is refused before anything is written.
pub fn notification_for(event: &Event, now_ms: u64) -> Result<RecordNotification, NotifyError> {
    let order: OrderEvent = serde_json::from_value(event.payload.clone())
        .map_err(|e| NotifyError::Invalid(format!("payload: {e}")))?;
    let message = match event.kind.as_str() {
        "order.confirmed" => format!(
            "Your order {} is confirmed (total {}).",
            order.order_id,
            order.total_minor.unwrap_or(0)
        ),
        "order.cancelled" => format!(
            "Your order {} was cancelled: {}.",
            order.order_id,
            order.reason.as_deref().unwrap_or("no reason given")
        ),
        other => {
            return Err(NotifyError::Invalid(format!(
                "kind: `{other}` is not consumed here"
            )))
        }
    };
    Ok(RecordNotification(Notification {
        order_id: order.order_id,
        kind: event.kind.clone(),
        event_id: event.id.clone(),
        message,
        created_at_ms: now_ms,
    }))
}

/// Stores a notification unless its event was handled before. Answers `true` if this
/// delivery created it.
#[derive(Debug, Serialize, Deserialize)]
pub struct RecordNotification(Notification);

impl Command for RecordNotification {
    type Output = bool;
    type Error = NotifyError;

    fn apply(&self, tx: &WriteTransaction) -> Result<bool, NotifyError> {
        let n = &self.0;
        if !events::inbox_first_delivery(tx, &n.event_id, n.created_at_ms)? {
            return Ok(false);
        }
        let mut table = tx.open_table(NOTIFICATIONS).map_err(StoreError::from)?;
        let key = format!("{}/{}", n.order_id, n.kind);
        if table.get(key.as_str()).map_err(StoreError::from)?.is_none() {
            table
                .insert(key.as_str(), store::encode(n).as_slice())
                .map_err(StoreError::from)?;
        }
        Ok(true)
    }
}

fn start(ctx: &RoleContext) -> anyhow::Result<Routes> {
    let store = ctx.store.clone();
    let ownership = ShardOwnership::new(
        ctx.manifest.name.clone(),
        ctx.config.shard,
        ctx.config.shards.clone(),
    );
    Ok(Arc::new(move |cfg| {
        cfg.app_data(web::Data::new(store.clone()))
            .app_data(web::Data::new(ownership.clone()))
            .route(EVENTS_PATH, web::post().to(receive))
            .route("/v1/notifications", web::get().to(list));
    }))
}

async fn receive(
    store: web::Data<Arc<Store>>,
    ownership: web::Data<ShardOwnership>,
    body: web::Json<serde_json::Value>,
) -> Result<HttpResponse, Problem> {
    let events = events::parse_delivery(body.into_inner()).map_err(Problem::bad_request)?;
    for event in &events {
        events::check_delivery(&ownership, event)?;
    }
    let firsts = record_all(&store, &events).await.map_err(|e| match e {
        NotifyError::Invalid(m) => Problem::bad_request(m),
        NotifyError::Store(e) => Problem::from(e),
    })?;
    let answers: Vec<_> = events
        .iter()
        .zip(&firsts)
        .map(|(e, first)| serde_json::json!({ "event_id": e.id, "duplicate": !first }))
        .collect();
    Ok(match <[_; 1]>::try_from(answers) {
        Ok([one]) => HttpResponse::Ok().json(one),
        Err(all) => HttpResponse::Ok().json(serde_json::json!({ "events": all })),
    })
}

/// Records every event of a delivery, or none if one of them is not for this role: the
/// commands go to the store together, so they share a commit. Each event is recorded
/// in a unit of work of its own trace (the order's), so `svc trace` finds it there
/// whichever delivery carried it. Answers, per event, whether it was new.
async fn record_all(store: &Store, events: &[Event]) -> Result<Vec<bool>, NotifyError> {
    let now = now_ms();
    let records = events
        .iter()
        .map(|e| notification_for(e, now))
        .collect::<Result<Vec<_>, _>>()?;
    let recorded = events.iter().zip(records).map(|(event, record)| async move {
        let trace = event
            .traceparent
            .as_deref()
            .and_then(TraceContext::parse_traceparent)
            .map(|t| t.child())
            .unwrap_or_else(TraceContext::new_root);
        let work = svc_platform::unit_of_work!(&trace, "event", event_id = %event.id, kind = %event.kind);
        work.set_kind(svc_platform::telemetry::SpanKind::Consumer);
        let first = work.instrument(store.submit(record)).await;
        let verdict = if first.is_ok() { Verdict::Done } else { Verdict::Failed };
        let duplicate = matches!(first, Ok(false));
        svc_platform::end_unit_of_work!(work, verdict, "event recorded", duplicate);
        if duplicate {
            work.span()
                .in_scope(|| tracing::info!(event_id = %event.id, "duplicate event dropped"));
        }
        first
    });
    futures::future::join_all(recorded)
        .await
        .into_iter()
        .collect()
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Filter {
    order_id: Option<String>,
}

async fn list(
    store: web::Data<Arc<Store>>,
    filter: web::Query<Filter>,
) -> Result<HttpResponse, Problem> {
    let selected = match &filter.order_id {
        Some(id) => {
            ids::check_id("order_id", id).map_err(Problem::bad_request)?;
            notifications_of(&store, id)?
        }
        None => store.scan_json(NOTIFICATIONS)?,
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({ "notifications": selected })))
}

/// The notifications of one order: the keys from `<order id>/` up to (not including)
/// `<order id>0`, `0` being the character after `/`. Reads no other order's rows.
pub fn notifications_of(store: &Store, order_id: &str) -> Result<Vec<Notification>, StoreError> {
    let tx = store.begin_read()?;
    let Some(table) = store::open_if_exists(&tx, NOTIFICATIONS)? else {
        return Ok(Vec::new());
    };
    let (from, to) = (format!("{order_id}/"), format!("{order_id}0"));
    let mut found = Vec::new();
    for row in table.range::<&str>(from.as_str()..to.as_str())? {
        found.push(store::decode(row?.1.value())?);
    }
    Ok(found)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record_event(store: &Store, event: &Event) -> Result<bool, NotifyError> {
        store.submit_blocking(notification_for(event, 7)?)
    }

    fn event(id: &str, kind: &str) -> Event {
        Event {
            id: id.into(),
            kind: kind.into(),
            producer: "orders-0".into(),
            seq: 1,
            occurred_at_ms: 0,
            traceparent: None,
            key: Some("ord-0-a".into()),
            payload: serde_json::json!({ "order_id": "ord-0-a", "total_minor": 900 }),
        }
    }

    /// Writes a row that is not a notification, as damage would.
    #[derive(Debug, Serialize, Deserialize)]
    struct WriteGarbage(String);

    impl Command for WriteGarbage {
        type Output = ();
        type Error = StoreError;

        fn apply(&self, tx: &WriteTransaction) -> Result<(), StoreError> {
            tx.open_table(NOTIFICATIONS)?
                .insert(self.0.as_str(), b"not json".as_slice())?;
            Ok(())
        }
    }

    fn order_event(id: &str, order_id: &str, kind: &str) -> Event {
        let mut e = event(id, kind);
        e.payload = serde_json::json!({ "order_id": order_id, "total_minor": 1 });
        e
    }

    #[test]
    fn an_orders_notifications_are_read_without_reading_other_orders() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("n.redb")).unwrap();
        assert!(notifications_of(&store, "ord-0-a").unwrap().is_empty());
        for (event_id, order, kind) in [
            ("e1", "ord-0-a", "order.confirmed"),
            ("e2", "ord-0-a.1", "order.cancelled"),
            ("e3", "ord-0-a", "order.cancelled"),
            ("e4", "ord-0-", "order.confirmed"),
        ] {
            record_event(&store, &order_event(event_id, order, kind)).unwrap();
        }
        // Rows of orders next to `ord-0-a` that a scan would trip over.
        for key in [
            "ord-0-a-/order.confirmed",
            "ord-0-a.0/x",
            "ord-0-a0/x",
            "ord-0-b/x",
        ] {
            store.submit_blocking(WriteGarbage(key.into())).unwrap();
        }
        let mine = notifications_of(&store, "ord-0-a").unwrap();
        let events: Vec<&str> = mine.iter().map(|n| n.event_id.as_str()).collect();
        assert_eq!(events, ["e3", "e1"], "this order's, by kind");
        assert!(mine.iter().all(|n| n.order_id == "ord-0-a"));
    }

    /// `cargo test --release -- --ignored notifications_of_one_order_among_many --nocapture`:
    /// prints how long reading one order's notifications takes among 23,000 orders', by
    /// range and by the full scan it replaced.
    #[test]
    #[ignore = "a measurement, not a test"]
    fn notifications_of_one_order_among_many() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("n.redb")).unwrap();
        let events: Vec<Event> = (0..23_000)
            .map(|i| {
                order_event(
                    &format!("e{i}"),
                    &format!("ord-0-{i:06}"),
                    "order.confirmed",
                )
            })
            .collect();
        for chunk in events.chunks(1000) {
            let records = chunk
                .iter()
                .map(|e| store.submit(notification_for(e, 7).unwrap()));
            futures::executor::block_on(futures::future::join_all(records));
        }
        let time = |f: &dyn Fn() -> usize| {
            let start = std::time::Instant::now();
            let mut found = 0;
            for _ in 0..100 {
                found += f();
            }
            (start.elapsed() / 100, found / 100)
        };
        let range = time(&|| notifications_of(&store, "ord-0-011500").unwrap().len());
        let scan = time(&|| {
            let all: Vec<Notification> = store.scan_json(NOTIFICATIONS).unwrap();
            all.into_iter()
                .filter(|n| n.order_id == "ord-0-011500")
                .count()
        });
        println!("one order among 23,000: range {range:?}, full scan {scan:?}");
        assert_eq!((range.1, scan.1), (1, 1));
    }

    #[test]
    fn a_redelivered_event_leaves_one_notification() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("n.redb")).unwrap();
        assert!(record_event(&store, &event("e1", "order.confirmed")).unwrap());
        assert!(!record_event(&store, &event("e1", "order.confirmed")).unwrap());
        let all: Vec<Notification> = store.scan_json(NOTIFICATIONS).unwrap();
        assert_eq!(all.len(), 1);
    }

    #[test]
    fn unknown_kinds_are_refused_and_write_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(&dir.path().join("n.redb")).unwrap();
        assert!(record_event(&store, &event("e2", "order.shipped")).is_err());
        assert!(store
            .scan_json::<Notification, _>(NOTIFICATIONS)
            .unwrap()
            .is_empty());
    }
}
