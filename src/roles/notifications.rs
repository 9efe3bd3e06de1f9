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
use svc_platform::problem::Problem;
use svc_platform::role::{RoleContext, Routes};
use svc_platform::shards::ShardOwnership;

use super::RoleEntry;
use svc_platform::store::{self, Command, JsonTable, Store, StoreError};

pub const ENTRY: RoleEntry = RoleEntry {
    manifest_source: include_str!("../../roles/notifications.yaml"),
    // No settings of its own.
    start: |ctx, _| start(ctx),
};

/// Keyed by `<order id>/<event kind>`: one notification per order and event.
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
    event: web::Json<Event>,
) -> Result<HttpResponse, Problem> {
    let store = store.into_inner();
    let event = event.into_inner();
    events::check_delivery(&ownership, &event)?;
    let id = event.id.clone();
    let as_problem = |e| match e {
        NotifyError::Invalid(m) => Problem::bad_request(m),
        NotifyError::Store(e) => Problem::from(e),
    };
    let record = notification_for(&event, now_ms()).map_err(as_problem)?;
    let first = store.submit(record).await.map_err(as_problem)?;
    if !first {
        tracing::info!(event_id = %id, "duplicate event dropped");
    }
    Ok(HttpResponse::Ok().json(serde_json::json!({ "event_id": id, "duplicate": !first })))
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
    let all: Vec<Notification> = store.scan_json(NOTIFICATIONS)?;
    let selected: Vec<_> = match &filter.order_id {
        Some(id) => all.into_iter().filter(|n| &n.order_id == id).collect(),
        None => all,
    };
    Ok(HttpResponse::Ok().json(serde_json::json!({ "notifications": selected })))
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
