//! What the use cases' unit tests share: an order book on a temporary redb file and a
//! saga runner without peers, so each use case is tested as plain Rust, with no network.

use std::sync::Arc;
use std::time::Duration;

use svc_platform::client::ServiceClient;
use svc_platform::clock::now_ms;
use svc_platform::config::PlatformConfig;
use svc_platform::events::OutboxRelay;
use svc_platform::peer_view::PeerView;
use svc_platform::shutdown::Shutdown;
use svc_platform::store::Store;

use super::book::OrderBook;
use super::order::{Order, Outcome, Step};
use super::saga::{SagaRunner, SagaSettings};

/// Long enough that a test which waits for it has hung.
pub const FOREVER: Duration = Duration::from_secs(3600);
pub const TEST_LIMIT: Duration = Duration::from_secs(20);

/// An order book on a temporary redb file, with a saga runner that has no peers: its
/// sagas never get past their next call, so an order ends only when a test ends it.
pub struct Orders {
    _dir: tempfile::TempDir,
    pub book: OrderBook,
    pub runner: Arc<SagaRunner>,
    pub shutdown: Shutdown,
}

pub fn orders() -> Orders {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("orders.redb")).unwrap());
    let key = svc_platform::secret_key::SecretKey::random().unwrap();
    let book = OrderBook::new(store.clone(), 0, "orders-test".into(), key);
    let config = PlatformConfig::default();
    let peers = PeerView::restore(store.clone());
    let registry = prometheus::Registry::new();
    let client = ServiceClient::new(peers, &config, &registry, None).unwrap();
    let (_, manifest) = crate::roles::find(&crate::roles::built_in(), "orders").unwrap();
    let catalog = crate::roles::built_in();
    let relay = OutboxRelay::new(store, client.clone(), &catalog, &manifest, &config.shards);
    let shutdown = Shutdown::new();
    let settings = SagaSettings {
        retry_max: Duration::from_millis(20),
        shards: config.shards.clone(),
    };
    let runner = SagaRunner::new(
        book.clone(),
        client,
        relay.signal(),
        settings,
        shutdown.clone(),
    );
    Orders {
        _dir: dir,
        book,
        runner: Arc::new(runner),
        shutdown,
    }
}

impl Orders {
    pub fn stored(&self) -> Vec<Order> {
        self.book.list(None, 100).unwrap().0
    }

    /// Stores the order `id` as its saga would after `step` ended with `outcome`; returns
    /// whether that ended the saga (an event was written).
    pub fn advance(&self, id: &str, step: Step, outcome: Outcome) -> bool {
        let order = self.book.get(id).unwrap().unwrap();
        // The store's answer needs no runtime: fine inside a test's runtime too.
        futures::executor::block_on(self.book.save_step(&order.after(step, outcome, now_ms())))
            .unwrap()
    }

    /// Ends the saga of `id` as if it had been compensated.
    pub fn end_cancelled(&self, id: &str) {
        let ended = self.advance(id, Step::Compensate, Outcome::Done);
        assert!(ended, "an event is written");
    }
}
