//! The time limit of a whole public request (`gateway.request_timeout`).
//!
//! The limit starts when the guard sees the request and covers reading the body and
//! making the answer. Guarantees:
//! - a client that trickles its body in is cut off at the limit with 408 and the
//!   connection closed, so it cannot hold a worker's connection for long;
//! - the limit is also the request's deadline ([`deadline::scope`]): calls the handler
//!   makes end by then, and a handler that waits on purpose (an order create waiting
//!   for its saga) answers before it, so a complete request gets its real answer;
//! - should the answer still be late, it is 504, not 408: the client sent everything
//!   in time, and a 408 would invite it to repeat a create that may have happened.
//!
//! Whether the body was all there is learnt by watching the payload stream reach its
//! end ([`BodyProgress`]); a request without a body (no payload, or `Content-Length:
//! 0`) has it all from the start.

use std::cell::Cell;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use actix_web::{
    dev::{Payload, ServiceRequest},
    error::PayloadError,
    http::header,
    HttpMessage,
};
use bytes::Bytes;
use futures::Stream;

use svc_platform::client::deadline;

/// Whether the request body has been read to its end.
#[derive(Clone)]
pub struct BodyProgress(Rc<Cell<bool>>);

impl BodyProgress {
    /// Replaces `req`'s payload with one that reports reaching its end.
    pub fn track(req: &mut ServiceRequest) -> BodyProgress {
        let payload = req.take_payload();
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v.as_bytes() == b"0");
        let done = Rc::new(Cell::new(empty || matches!(payload, Payload::None)));
        if !done.get() {
            let tracked: Pin<Box<dyn Stream<Item = Result<Bytes, PayloadError>>>> =
                Box::pin(Tracked {
                    inner: payload,
                    done: done.clone(),
                });
            req.set_payload(Payload::from(tracked));
        }
        BodyProgress(done)
    }

    pub fn received(&self) -> bool {
        self.0.get()
    }
}

struct Tracked {
    inner: Payload,
    done: Rc<Cell<bool>>,
}

impl Stream for Tracked {
    type Item = Result<Bytes, PayloadError>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let next = Pin::new(&mut self.inner).poll_next(cx);
        if let Poll::Ready(None) = next {
            self.done.set(true);
        }
        next
    }
}

/// Runs `fut` for at most `limit`, with the request's deadline no later than that;
/// `None` when the limit passed first.
pub async fn bounded<F: Future>(limit: Duration, fut: F) -> Option<F::Output> {
    let own = Instant::now() + limit;
    let deadline = deadline::current().map_or(own, |inherited| inherited.min(own));
    tokio::time::timeout(limit, deadline::scope(deadline, fut))
        .await
        .ok()
}

#[cfg(test)]
mod tests {
    use actix_web::test::TestRequest;
    use futures::StreamExt;

    use super::*;

    #[actix_web::test]
    async fn a_body_counts_as_received_once_read_to_its_end() {
        let mut req = TestRequest::post()
            .set_payload(Bytes::from_static(b"{}"))
            .to_srv_request();
        let progress = BodyProgress::track(&mut req);
        assert!(!progress.received());
        let mut payload = req.take_payload();
        assert_eq!(payload.next().await.unwrap().unwrap(), "{}");
        assert!(!progress.received());
        assert!(payload.next().await.is_none());
        assert!(progress.received());

        // What the server hands over for a request without a body.
        let mut get = TestRequest::get().to_srv_request();
        get.set_payload(Payload::None);
        assert!(
            BodyProgress::track(&mut get).received(),
            "no body: all there"
        );
        let mut empty = TestRequest::post()
            .insert_header((header::CONTENT_LENGTH, "0"))
            .to_srv_request();
        assert!(BodyProgress::track(&mut empty).received(), "an empty body");
    }

    #[actix_web::test]
    async fn the_limit_cuts_the_work_and_becomes_the_deadline() {
        let limit = Duration::from_millis(50);
        assert_eq!(bounded(limit, std::future::pending::<()>()).await, None);
        let seen = bounded(limit, async { deadline::current() }).await.unwrap();
        let left = seen.unwrap().saturating_duration_since(Instant::now());
        assert!(left <= limit && left > Duration::ZERO, "{left:?}");
        // An earlier deadline the request already had wins.
        let early = Instant::now() + Duration::from_millis(5);
        let seen = deadline::scope(early, bounded(limit, async { deadline::current() })).await;
        assert_eq!(seen.unwrap(), Some(early));
    }
}
