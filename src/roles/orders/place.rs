//! Placing an order: the use case behind `POST /v1/orders`, as plain Rust.
//!
//! [`place_order`] takes a request already parsed at the edge and, in this order:
//! answers a known idempotency key with its order (writing nothing); checks that every
//! product exists ([`Catalogue`]: inventory, one batch per shard owning some SKU); hands
//! the card to payments ([`CardVault`]); stores the order `pending` together with its key
//! in one transaction and hands it to the saga, in a task of its own; and waits a short
//! while for the saga to end. Nothing is written unless every check passed, so a refused
//! request can be retried as it is; and once the order is stored its saga runs, whatever
//! becomes of the request (its deadline passing, its connection closing).
//!
//! The outcome says whether this request created the order ([`Placed`]); the HTTP layer
//! decides the status from it and from whether the order is final.

use std::sync::Arc;
use std::time::Duration;

use svc_platform::client::{Call, ServiceClient};
use svc_platform::shards::ShardCounts;
use svc_platform::trace_context;

use super::book::{BookError, Created, OrderBook};
use super::cards::{CardHoldError, CardVault};
use super::known_products::KnownProducts;
use super::order::{Line, Order, OrderRequest};
use super::placement::{lines_by_inventory_shard, INVENTORY};
use super::saga::SagaRunner;

/// Inventory's batch lookup: which of these SKUs exist.
const PRODUCT_LOOKUPS: &str = "/v1/product-lookups";

pub use crate::domain::IdempotencyKey;

/// What placing an order did. The order is as it was when the wait ended: final, or
/// still `pending` if its saga takes longer.
#[derive(Debug)]
pub enum Placed {
    /// This request created the order.
    Created(Order),
    /// The idempotency key had already created this order; nothing new was written.
    Replayed(Order),
}

impl Placed {
    pub fn order(&self) -> &Order {
        match self {
            Placed::Created(order) | Placed::Replayed(order) => order,
        }
    }
}

/// Why placing an order failed. An unknown product, inventory not answering and a reused
/// key refuse before anything is written; a store failure may come after the order was
/// stored, and a replay of its key then answers with it.
#[derive(Debug, thiserror::Error)]
pub enum PlaceError {
    #[error(transparent)]
    Products(#[from] ProductCheckError),
    #[error(transparent)]
    Card(#[from] CardHoldError),
    /// The key was used for another request, or the store failed.
    #[error(transparent)]
    Book(#[from] BookError),
    /// The task running a store transaction did not finish (a panic, or the runtime
    /// stopping), so whether it committed is unknown.
    #[error("the store task did not finish: {0}")]
    StoreTask(#[from] tokio::task::JoinError),
}

/// Why the products of an order could not be confirmed.
#[derive(Debug, thiserror::Error)]
pub enum ProductCheckError {
    #[error("unknown product `{0}`")]
    Unknown(String),
    /// Inventory could not say; worth trying again shortly.
    #[error("{0}")]
    Unavailable(String),
}

/// Where the products of an order are looked up before it is written: inventory in the
/// service ([`InventoryCatalogue`]), a fixed list in tests.
pub trait Catalogue {
    /// `Ok` when the product of every line exists; else the first unknown one, or why
    /// that could not be told.
    async fn check_known(&self, lines: &[Line]) -> Result<(), ProductCheckError>;
}

/// Asks inventory about the SKUs not yet [`KnownProducts`]: one batch lookup per
/// inventory shard owning some of them, all at once, never one call per line (an
/// order of 50 lines is 50 lookups otherwise, and each a chance to fail).
pub struct InventoryCatalogue<'a> {
    pub client: &'a ServiceClient,
    pub shards: &'a ShardCounts,
    pub known: &'a KnownProducts,
}

/// Inventory's answer to a batch lookup (`POST /v1/product-lookups`).
#[derive(Debug, serde::Deserialize)]
struct LookupAnswer {
    known: Vec<String>,
}

impl Catalogue for InventoryCatalogue<'_> {
    async fn check_known(&self, lines: &[Line]) -> Result<(), ProductCheckError> {
        let unknown: Vec<Line> = lines
            .iter()
            .filter(|line| !self.known.contains(&line.sku))
            .cloned()
            .collect();
        let by_shard = lines_by_inventory_shard(&unknown, self.shards);
        let bodies: Vec<(u32, serde_json::Value)> = by_shard
            .iter()
            .map(|(shard, lines)| {
                let skus: Vec<&str> = lines.iter().map(|l| l.sku.as_str()).collect();
                (*shard, serde_json::json!({ "skus": skus }))
            })
            .collect();
        let lookups = bodies.iter().map(|(shard, body)| {
            // It changes nothing: safe to repeat.
            let call = Call::post(PRODUCT_LOOKUPS)
                .json(body)
                .shard(*shard)
                .idempotent();
            self.client.call(INVENTORY, call)
        });
        let mut confirmed = std::collections::HashSet::new();
        for res in futures::future::join_all(lookups).await {
            let answer = match res {
                Ok(r) if r.is_success() => r.json::<LookupAnswer>().map_err(|e| {
                    ProductCheckError::Unavailable(format!("inventory's lookup answer: {e}"))
                })?,
                Ok(r) => {
                    return Err(ProductCheckError::Unavailable(format!(
                        "inventory could not check the products ({}: {})",
                        r.status,
                        r.problem_detail()
                    )))
                }
                Err(e) => {
                    return Err(ProductCheckError::Unavailable(format!(
                        "inventory is not available to check products: {e}"
                    )))
                }
            };
            for sku in answer.known {
                self.known.insert(&sku);
                confirmed.insert(sku);
            }
        }
        // The first line, in the order's own order, that inventory does not know.
        match unknown.iter().find(|line| !confirmed.contains(&line.sku)) {
            Some(line) => Err(ProductCheckError::Unknown(line.sku.clone())),
            None => Ok(()),
        }
    }
}

/// Places `request` (see the module doc), waiting up to `wait` for its saga to end, less
/// if the caller's deadline is nearer or this instance stops.
pub async fn place_order(
    book: &OrderBook,
    runner: &Arc<SagaRunner>,
    products: &impl Catalogue,
    cards: &impl CardVault,
    request: OrderRequest,
    key: Option<IdempotencyKey>,
    wait: Duration,
) -> Result<Placed, PlaceError> {
    if let Some(key) = &key {
        let (reader, probe, key) = (book.clone(), request.clone(), key.clone());
        let known = tokio::task::spawn_blocking(move || reader.order_for_key(&probe, Some(&key)));
        if let Some(existing) = known.await?? {
            let order = runner.drive_and_wait(&existing.id, wait).await?;
            return Ok(Placed::Replayed(order));
        }
    }
    products.check_known(&request.lines).await?;
    let id = book.new_order_id();
    if let Some(card) = &request.card {
        cards.hold(&id, card).await?;
    }
    // The saga continues the trace of the request that created the order.
    let traceparent = trace_context::current().map(|c| c.traceparent());
    let storing = {
        let (book, runner) = (book.clone(), runner.clone());
        let key = key.as_deref().map(str::to_string);
        async move {
            let created = book
                .create(id, request, key.as_deref(), traceparent)
                .await?;
            if let Created::New(order) = &created {
                tracing::info!(order_id = %order.id, "order created");
                runner.drive(order.id.clone());
            }
            Ok::<_, BookError>(created)
        }
    };
    // Not cancelled with this request: a stored order always has its saga started.
    let storing = tokio::spawn(tracing::Instrument::in_current_span(storing));
    match storing.await?? {
        Created::New(order) => Ok(Placed::Created(
            runner.drive_and_wait(&order.id, wait).await?,
        )),
        // The same key won a race with this request after the check above.
        Created::Existing(order) => Ok(Placed::Replayed(
            runner.drive_and_wait(&order.id, wait).await?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use svc_platform::problem::Problem;
    use svc_platform::trace_context::TraceContext;

    use super::super::order::{NewOrder, Status, Step};
    use super::super::testing::{orders, Orders, FOREVER, TEST_LIMIT};
    use super::*;

    /// Inventory as a fixed list of SKUs (or not answering); counts the checks.
    struct Shelf {
        known: &'static [&'static str],
        answering: bool,
        checks: Cell<usize>,
    }

    fn shelf(known: &'static [&'static str]) -> Shelf {
        Shelf {
            known,
            answering: true,
            checks: Cell::new(0),
        }
    }

    impl Catalogue for Shelf {
        async fn check_known(&self, lines: &[Line]) -> Result<(), ProductCheckError> {
            self.checks.set(self.checks.get() + 1);
            if !self.answering {
                return Err(ProductCheckError::Unavailable("inventory is down".into()));
            }
            match lines.iter().find(|l| !self.known.contains(&l.sku.as_str())) {
                Some(l) => Err(ProductCheckError::Unknown(l.sku.clone())),
                None => Ok(()),
            }
        }
    }

    /// Payments' card vault as a list of the cards handed over (or not answering).
    #[derive(Default)]
    struct Wallet {
        held: std::cell::RefCell<Vec<(String, String)>>,
        down: bool,
    }

    impl CardVault for Wallet {
        async fn hold(&self, order_id: &str, card: &str) -> Result<(), CardHoldError> {
            if self.down {
                return Err(CardHoldError::Unavailable("payments is down".into()));
            }
            self.held.borrow_mut().push((order_id.into(), card.into()));
            Ok(())
        }
    }

    fn request(body: serde_json::Value) -> OrderRequest {
        serde_json::from_value::<NewOrder>(body)
            .unwrap()
            .parse()
            .unwrap()
    }

    fn tea(quantity: u32) -> OrderRequest {
        request(serde_json::json!({ "lines": [{ "sku": "tea", "quantity": quantity }] }))
    }

    fn key(k: &str) -> Option<IdempotencyKey> {
        Some(IdempotencyKey::parse(k).unwrap())
    }

    impl Orders {
        /// Places without waiting for the saga (it would not end by itself).
        async fn place(
            &self,
            products: &Shelf,
            request: OrderRequest,
            key: Option<IdempotencyKey>,
        ) -> Result<Placed, PlaceError> {
            self.place_waiting(products, request, key, Duration::ZERO)
                .await
        }

        async fn place_waiting(
            &self,
            products: &Shelf,
            request: OrderRequest,
            key: Option<IdempotencyKey>,
            wait: Duration,
        ) -> Result<Placed, PlaceError> {
            let cards = Wallet::default();
            let placing = place_order(
                &self.book,
                &self.runner,
                products,
                &cards,
                request,
                key,
                wait,
            );
            tokio::time::timeout(TEST_LIMIT, placing)
                .await
                .expect("placing an order hung")
        }
    }

    #[tokio::test]
    async fn a_new_order_is_stored_pending_and_handed_to_the_saga() {
        let orders = orders();
        let products = shelf(&["tea"]);
        let placed = orders.place(&products, tea(2), key("k1")).await.unwrap();
        let Placed::Created(order) = placed else {
            panic!("a new key creates: {placed:?}")
        };
        assert_eq!((order.status, order.step), (Status::Pending, Step::Reserve));
        assert_eq!(order.lines, tea(2).lines);
        assert!(order.id.starts_with("ord-0-"), "{}", order.id);
        assert_eq!(orders.stored(), std::slice::from_ref(&order));
        assert_eq!(orders.book.unfinished().unwrap(), [order.id]);
        assert_eq!(products.checks.get(), 1);
    }

    #[tokio::test]
    async fn a_known_key_replays_its_order_without_asking_inventory_or_writing() {
        let orders = orders();
        let first = orders.place(&shelf(&["tea"]), tea(2), key("k1")).await;
        let first = first.unwrap().order().clone();
        let mut down = shelf(&[]);
        down.answering = false;
        let again = orders.place(&down, tea(2), key("k1")).await.unwrap();
        assert!(
            matches!(&again, Placed::Replayed(o) if *o == first),
            "{again:?}"
        );
        assert_eq!(down.checks.get(), 0, "a replay asks nobody");
        assert_eq!(orders.stored(), [first]);
    }

    #[tokio::test]
    async fn a_replay_answers_with_the_order_as_its_saga_left_it() {
        let orders = orders();
        let products = shelf(&["tea"]);
        let placed = orders.place(&products, tea(1), key("k1")).await.unwrap();
        orders.end_cancelled(&placed.order().id);
        let again = orders.place(&products, tea(1), key("k1")).await.unwrap();
        let Placed::Replayed(order) = again else {
            panic!("a known key replays: {again:?}")
        };
        assert_eq!(
            (order.id.as_str(), order.status),
            (placed.order().id.as_str(), Status::Cancelled)
        );
    }

    #[tokio::test]
    async fn a_key_reused_with_another_body_is_refused_with_422() {
        let orders = orders();
        let products = shelf(&["tea"]);
        let first = orders.place(&products, tea(1), key("k1")).await.unwrap();
        let refused = orders
            .place(&products, tea(5), key("k1"))
            .await
            .unwrap_err();
        assert!(
            matches!(&refused, PlaceError::Book(BookError::KeyReused(k)) if k == "k1"),
            "{refused:?}"
        );
        assert_eq!(Problem::from(refused).status, 422);
        assert_eq!(orders.stored(), [first.order().clone()]);
    }

    #[tokio::test]
    async fn an_unknown_product_is_refused_with_422_and_writes_nothing() {
        let orders = orders();
        let products = shelf(&["tea"]);
        let body = serde_json::json!({ "lines": [
            { "sku": "tea", "quantity": 1 }, { "sku": "cake", "quantity": 1 }
        ] });
        let refused = orders.place(&products, request(body), key("k1")).await;
        let problem = Problem::from(refused.unwrap_err());
        assert_eq!(
            (problem.status, problem.detail.as_str()),
            (422, "unknown product `cake`")
        );
        assert!(orders.stored().is_empty());
        assert!(orders.book.unfinished().unwrap().is_empty());
        // The key was not spent: a corrected request with it creates the order.
        let placed = orders.place(&products, tea(1), key("k1")).await.unwrap();
        assert!(matches!(placed, Placed::Created(_)), "{placed:?}");
    }

    #[tokio::test]
    async fn inventory_not_answering_is_503_and_writes_nothing() {
        let orders = orders();
        let mut down = shelf(&["tea"]);
        down.answering = false;
        let refused = orders.place(&down, tea(1), key("k1")).await.unwrap_err();
        let problem = Problem::from(refused);
        assert_eq!(problem.status, 503);
        assert_eq!(problem.retry_after, Some(Duration::from_secs(1)));
        assert!(orders.stored().is_empty());
    }

    #[tokio::test]
    async fn without_a_key_every_request_is_a_new_order() {
        let orders = orders();
        let products = shelf(&["tea"]);
        let a = orders.place(&products, tea(1), None).await.unwrap();
        let b = orders.place(&products, tea(1), None).await.unwrap();
        assert!(matches!((&a, &b), (Placed::Created(_), Placed::Created(_))));
        assert_ne!(a.order().id, b.order().id);
        assert_eq!(orders.stored().len(), 2);
    }

    #[tokio::test]
    async fn the_order_keeps_the_trace_of_the_request_that_placed_it() {
        let orders = orders();
        let trace = TraceContext::new_root();
        let products = shelf(&["tea"]);
        let placing = orders.place(&products, tea(1), None);
        let placed = trace_context::scope(trace.clone(), placing).await.unwrap();
        let stored = orders.book.get(&placed.order().id).unwrap().unwrap();
        assert_eq!(stored.traceparent, Some(trace.traceparent()));
    }

    #[tokio::test]
    async fn the_wait_ends_when_the_saga_does() {
        let orders = orders();
        let placed = orders.place(&shelf(&["tea"]), tea(1), None).await.unwrap();
        let id = placed.order().id.clone();
        let runner = orders.runner.clone();
        let until = tokio::time::Instant::now() + FOREVER;
        let waiter = tokio::spawn(async move { runner.wait_for_outcome(&id, until).await });
        // On this single-threaded runtime the waiter now reads the pending order and
        // starts waiting before the saga is ended below.
        tokio::task::yield_now().await;
        orders.end_cancelled(&placed.order().id);
        let ended = tokio::time::timeout(TEST_LIMIT, waiter).await;
        let order = ended.expect("the wait outlived the saga").unwrap().unwrap();
        assert_eq!(order.map(|o| o.status), Some(Status::Cancelled));
    }

    #[tokio::test]
    async fn a_stopping_instance_answers_at_once_with_the_pending_order() {
        let orders = orders();
        orders.shutdown.trigger();
        let placed = orders
            .place_waiting(&shelf(&["tea"]), tea(1), None, FOREVER)
            .await
            .unwrap();
        assert!(matches!(&placed, Placed::Created(o) if o.status == Status::Pending));
    }

    #[tokio::test]
    async fn the_card_goes_to_payments_and_only_its_last_digits_are_stored() {
        let orders = orders();
        let body = serde_json::json!({
            "lines": [{ "sku": "tea", "quantity": 1 }], "card": "4242 4242 4242 4242"
        });
        let (wallet, products) = (Wallet::default(), shelf(&["tea"]));
        let placing = place_order(
            &orders.book,
            &orders.runner,
            &products,
            &wallet,
            request(body.clone()),
            key("k1"),
            Duration::ZERO,
        );
        let placed = placing.await.unwrap();
        let order = placed.order();
        assert_eq!(
            *wallet.held.borrow(),
            [(order.id.clone(), "4242424242424242".to_string())]
        );
        assert!(order.card_on_file);
        assert_eq!(order.card_last4.as_deref(), Some("4242"));
        let stored = serde_json::to_string(&orders.stored()).unwrap();
        assert!(!stored.contains("42424242"), "{stored}");
        // The key's fingerprint is keyed: the same request replays, another is refused.
        let again = orders
            .place(&shelf(&["tea"]), request(body), key("k1"))
            .await;
        assert!(matches!(again, Ok(Placed::Replayed(_))), "{again:?}");
        let other = serde_json::json!({
            "lines": [{ "sku": "tea", "quantity": 1 }], "card": "4242 4242 4242 4243"
        });
        let refused = orders
            .place(&shelf(&["tea"]), request(other), key("k1"))
            .await;
        assert!(matches!(
            refused,
            Err(PlaceError::Book(BookError::KeyReused(_)))
        ));
    }

    #[tokio::test]
    async fn payments_not_taking_the_card_is_503_and_writes_nothing() {
        let orders = orders();
        let body = serde_json::json!({
            "lines": [{ "sku": "tea", "quantity": 1 }], "card": "4242424242424242"
        });
        let down = Wallet {
            down: true,
            ..Wallet::default()
        };
        let products = shelf(&["tea"]);
        let refused = place_order(
            &orders.book,
            &orders.runner,
            &products,
            &down,
            request(body),
            key("k1"),
            Duration::ZERO,
        )
        .await
        .unwrap_err();
        assert_eq!(Problem::from(refused).status, 503);
        assert!(orders.stored().is_empty());
    }

    #[test]
    fn invalid_bodies_never_become_a_request() {
        let bodies = [
            serde_json::json!({ "lines": [] }),
            serde_json::json!({ "lines": [{ "sku": "tea", "quantity": 0 }] }),
            serde_json::json!({ "lines": [{ "sku": "tea", "quantity": "1" }] }),
            serde_json::json!({ "lines": [{ "sku": "tea", "quantity": 1, "price_minor": 1 }] }),
            serde_json::json!({ "lines": [{ "sku": "tea", "quantity": 1 }], "card": "12ab" }),
            serde_json::json!({ "lines": [{ "sku": "tea", "quantity": 1 }], "total": 5 }),
        ];
        for body in bodies {
            let parsed = serde_json::from_value::<NewOrder>(body.clone())
                .map_err(|e| e.to_string())
                .and_then(NewOrder::parse);
            assert!(parsed.is_err(), "{body}");
        }
        let card = serde_json::json!({ "lines": [{ "sku": "tea", "quantity": 1 }], "card": "4111-1111 1111-1111" });
        assert_eq!(request(card).card.as_deref(), Some("4111111111111111"));
    }
}
