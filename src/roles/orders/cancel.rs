//! Cancelling an order: the use case behind `POST /v1/orders/{id}/cancel`, as plain Rust.
//!
//! [`cancel_order`] records the customer's cancel on the order (refused once the order
//! is at `commit` or later: a commit may be in flight, and committed stock cannot be
//! released), makes sure its saga runs, and waits a short while for the saga to
//! compensate. Cancelling an order that is already cancelled, or already being
//! cancelled (its saga compensating after a refusal or an earlier cancel, even where the
//! store still shows an earlier step), changes nothing and answers with it: what will
//! happen, never a refusal claiming it is being confirmed.

use std::sync::Arc;
use std::time::Duration;

use super::book::{BookError, OrderBook};
use super::order::{Order, Status};
use super::saga::SagaRunner;

/// Why cancelling an order failed.
#[derive(Debug, thiserror::Error)]
pub enum CancelError {
    /// No such order, an order confirmed or being confirmed, or the store failed.
    #[error(transparent)]
    Book(#[from] BookError),
    /// The cancel was recorded, but the saga confirmed the order before honouring it.
    #[error("order `{0}` was confirmed before the cancellation took effect")]
    ConfirmedFirst(String),
    /// The task running the store transaction did not finish (a panic, or the runtime
    /// stopping), so whether the cancel was recorded is unknown.
    #[error("the store task did not finish: {0}")]
    StoreTask(#[from] tokio::task::JoinError),
}

/// Cancels the order `id` (see the module doc), waiting up to `wait` for its saga to
/// end, less if the caller's deadline is nearer or this instance stops. The order
/// returned is `cancelled`, or still `pending` with the cancel recorded if its saga
/// takes longer; the saga will compensate it.
pub async fn cancel_order(
    book: &OrderBook,
    runner: &Arc<SagaRunner>,
    id: &str,
    wait: Duration,
) -> Result<Order, CancelError> {
    match book.request_cancel(id).await {
        Ok(_) => {}
        Err(BookError::BeingConfirmed(_)) if runner.is_compensating(id) => {}
        Err(e) => return Err(e.into()),
    }
    let order = runner.drive_and_wait(id, wait).await?;
    match order.status {
        Status::Confirmed => Err(CancelError::ConfirmedFirst(order.id)),
        Status::Pending | Status::Cancelled => Ok(order),
    }
}

#[cfg(test)]
mod tests {
    use svc_platform::problem::Problem;

    use super::super::book::Created;
    use super::super::order::{NewOrder, Outcome, Step};
    use super::super::testing::{orders, Orders, FOREVER, TEST_LIMIT};
    use super::*;

    impl Orders {
        /// A new `pending` order at `reserve`, its saga not started.
        fn pending(&self) -> Order {
            let request = serde_json::json!({ "lines": [{ "sku": "tea", "quantity": 1 }] });
            let request = serde_json::from_value::<NewOrder>(request).unwrap();
            let id = self.book.new_order_id();
            let created = self.book.create(id, request.parse().unwrap(), None, None);
            match futures::executor::block_on(created) {
                Ok(Created::New(order)) => order,
                _ => panic!("a new order is created"),
            }
        }

        /// A new order whose saga has got as far as `step`.
        fn at(&self, step: Step) -> Order {
            let id = self.pending().id;
            let reserved = Outcome::Reserved {
                prices: vec![("tea".into(), 250)],
                total_minor: 250,
            };
            let steps = [
                (Step::Reserve, reserved),
                (Step::Authorize, Outcome::Done),
                (Step::Commit, Outcome::Done),
                (Step::Capture, Outcome::Done),
            ];
            for (done, outcome) in steps {
                if self.book.get(&id).unwrap().unwrap().step == step {
                    break;
                }
                self.advance(&id, done, outcome);
            }
            let order = self.book.get(&id).unwrap().unwrap();
            assert_eq!(order.step, step, "{order:?}");
            order
        }

        /// Cancels without waiting for the saga (it would not end by itself).
        async fn cancel(&self, id: &str) -> Result<Order, CancelError> {
            self.cancel_waiting(id, Duration::ZERO).await
        }

        async fn cancel_waiting(&self, id: &str, wait: Duration) -> Result<Order, CancelError> {
            let cancelling = cancel_order(&self.book, &self.runner, id, wait);
            tokio::time::timeout(TEST_LIMIT, cancelling)
                .await
                .expect("cancelling an order hung")
        }

        /// Waits until the cancel of `id` is recorded.
        async fn cancel_recorded(&self, id: &str) {
            let recorded = async {
                while !self.book.get(id).unwrap().unwrap().cancel_requested {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
            };
            tokio::time::timeout(TEST_LIMIT, recorded)
                .await
                .expect("the cancel was never recorded");
        }
    }

    fn problem(refused: CancelError) -> (u16, String) {
        let problem = Problem::from(refused);
        (problem.status, problem.detail)
    }

    #[tokio::test]
    async fn a_cancel_is_recorded_at_reserve_and_the_saga_compensates_next() {
        let orders = orders();
        let id = orders.pending().id;
        let order = orders.cancel(&id).await.unwrap();
        assert_eq!((order.status, order.step), (Status::Pending, Step::Reserve));
        assert!(order.cancel_requested);
        assert_eq!(order.next_step(), Step::Compensate);
        assert_eq!(orders.stored(), [order]);
    }

    #[tokio::test]
    async fn a_cancel_is_honoured_at_authorize() {
        let orders = orders();
        let id = orders.at(Step::Authorize).id;
        let order = orders.cancel(&id).await.unwrap();
        assert!(order.cancel_requested);
        assert_eq!(order.next_step(), Step::Compensate);
    }

    #[tokio::test]
    async fn from_commit_on_a_cancel_is_refused_with_409_and_changes_nothing() {
        let orders = orders();
        for step in [Step::Commit, Step::Capture] {
            let before = orders.at(step);
            let refused = orders.cancel(&before.id).await.unwrap_err();
            assert!(
                matches!(&refused, CancelError::Book(BookError::BeingConfirmed(i)) if *i == before.id),
                "{refused:?}"
            );
            let detail = format!(
                "order `{}` is being confirmed and can no longer be cancelled",
                before.id
            );
            assert_eq!(problem(refused), (409, detail));
            assert_eq!(orders.book.get(&before.id).unwrap(), Some(before));
        }
    }

    #[tokio::test]
    async fn an_order_stored_compensating_answers_with_itself_not_409() {
        let orders = orders();
        let id = orders.pending().id;
        orders.advance(
            &id,
            Step::Reserve,
            Outcome::Refused("out of stock: tea".into()),
        );
        let before = orders.book.get(&id).unwrap().unwrap();
        assert_eq!(
            (before.status, before.step),
            (Status::Pending, Step::Compensate)
        );
        let order = orders.cancel(&id).await.unwrap();
        assert_eq!(
            order, before,
            "nothing changes; the order will end cancelled"
        );
        assert_eq!(orders.book.get(&id).unwrap(), Some(before));
    }

    #[tokio::test]
    async fn an_order_compensating_ahead_of_the_store_answers_with_itself_not_409() {
        let orders = orders();
        // Stored at commit; the commit was refused and the saga compensates in memory.
        let at_commit = orders.at(Step::Commit);
        orders.runner.mark_compensating(&at_commit.id);
        let order = orders.cancel(&at_commit.id).await.unwrap();
        assert_eq!(order.status, Status::Pending);
        assert_eq!(orders.book.get(&at_commit.id).unwrap(), Some(at_commit));
    }

    #[tokio::test]
    async fn a_confirmed_order_cannot_be_cancelled() {
        let orders = orders();
        let confirmed = orders.at(Step::Done);
        assert_eq!(confirmed.status, Status::Confirmed);
        let refused = orders.cancel(&confirmed.id).await.unwrap_err();
        let detail = format!(
            "order `{}` is confirmed and can no longer be cancelled",
            confirmed.id
        );
        assert_eq!(problem(refused), (409, detail));
        assert_eq!(orders.book.get(&confirmed.id).unwrap(), Some(confirmed));
    }

    #[tokio::test]
    async fn an_unknown_order_is_404() {
        let orders = orders();
        let refused = orders.cancel("ord-0-nosuchorder").await.unwrap_err();
        assert!(
            matches!(&refused, CancelError::Book(BookError::NotFound(_))),
            "{refused:?}"
        );
        let detail = "no order `ord-0-nosuchorder`".to_string();
        assert_eq!(problem(refused), (404, detail));
        assert!(orders.stored().is_empty());
    }

    #[tokio::test]
    async fn cancelling_a_cancelled_order_answers_with_it_unchanged() {
        let orders = orders();
        let id = orders.pending().id;
        orders.end_cancelled(&id);
        let cancelled = orders.book.get(&id).unwrap().unwrap();
        let again = orders.cancel(&id).await.unwrap();
        assert_eq!(again, cancelled);
        assert_eq!(orders.stored(), [cancelled]);
    }

    #[tokio::test]
    async fn the_wait_ends_when_the_compensation_does() {
        let orders = orders();
        let id = orders.at(Step::Authorize).id;
        let (cancelled, ()) = tokio::join!(orders.cancel_waiting(&id, FOREVER), async {
            orders.cancel_recorded(&id).await;
            orders.end_cancelled(&id);
        });
        let order = cancelled.unwrap();
        assert_eq!((order.status, order.step), (Status::Cancelled, Step::Done));
        assert_eq!(order.reason.as_deref(), Some("cancelled by the customer"));
    }

    #[tokio::test]
    async fn an_order_confirmed_before_the_cancel_took_effect_is_409() {
        let orders = orders();
        let id = orders.at(Step::Authorize).id;
        let (cancelled, ()) = tokio::join!(orders.cancel_waiting(&id, FOREVER), async {
            orders.cancel_recorded(&id).await;
            // Not what the saga does (it honours a cancel recorded during authorize),
            // but what the use case must answer if an order ends confirmed anyway.
            orders.advance(&id, Step::Authorize, Outcome::Done);
            orders.advance(&id, Step::Commit, Outcome::Done);
            assert!(orders.advance(&id, Step::Capture, Outcome::Done));
        });
        let refused = cancelled.unwrap_err();
        assert!(
            matches!(&refused, CancelError::ConfirmedFirst(i) if *i == id),
            "{refused:?}"
        );
        let detail = format!("order `{id}` was confirmed before the cancellation took effect");
        assert_eq!(problem(refused), (409, detail));
    }

    #[tokio::test]
    async fn a_stopping_instance_answers_at_once_with_the_pending_order() {
        let orders = orders();
        orders.shutdown.trigger();
        let id = orders.pending().id;
        let order = orders.cancel_waiting(&id, FOREVER).await.unwrap();
        assert_eq!(order.status, Status::Pending);
        assert!(order.cancel_requested);
    }
}
