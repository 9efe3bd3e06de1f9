//! The saga runner: drives each pending order through its steps until it ends.
//!
//! One task per unfinished order. Each iteration reads the order (for a cancel request),
//! runs its next step against inventory or payments, and stores the result where the
//! protocol needs it (see `Order::must_be_stored`): before the commit is sent, and the
//! end with its event. Other step results stay in memory; every step is idempotent per
//! order at the callee, so repeating one after a crash or a timeout is safe. A refusal (4xx) moves the order to compensation; anything else
//! (timeout, 5xx, no instance) is retried with backoff, forever, because giving up
//! half-way is the one thing a saga must not do. On start-up every unfinished order is
//! resumed; a shutdown simply stops the loops, which resume on the next start.
//!
//! Every call goes to the shard that owns its part of the order ([`placement`]). Lines
//! on several inventory shards are reserved on each at once (one reservation per shard,
//! merged into one outcome) and committed one shard after the other, in shard order: a
//! refusal on the first shard means nothing was committed and the order is compensated;
//! a refusal after an earlier shard committed cannot be undone, so it is logged as an
//! error and retried, like a refused capture.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::broadcast;
use tokio::sync::broadcast::error::RecvError;

use super::book::{BookError, OrderBook};
use super::order::{Order, Outcome, Step};
use super::placement::{self, INVENTORY, PAYMENTS};
use svc_platform::backoff::Backoff;
use svc_platform::client::{self, Call, CallResponse, ServiceClient};
use svc_platform::clock::now_ms;
use svc_platform::events::OutboxSignal;
use svc_platform::shards::ShardCounts;
use svc_platform::shutdown::Shutdown;
use svc_platform::store::StoreError;
use svc_platform::telemetry::Verdict;
use svc_platform::trace_context::{self, TraceContext};

/// The first pause before a step is retried; it doubles up to `retry_max`.
const RETRY_BASE: Duration = Duration::from_millis(100);

/// Test hook: pause this long before every saga step, so a test can kill the process
/// while sagas are in the middle. Only in builds with fault hooks (see `svc_platform::fault`).
pub const FAULT_STEP_DELAY_ENV: &str = "SVC_FAULT_SAGA_STEP_DELAY";

/// Why a step did not complete this time.
#[derive(Debug)]
enum Retry {
    Transient(String),
}

pub struct SagaRunner {
    book: OrderBook,
    client: ServiceClient,
    active: Mutex<HashSet<String>>,
    /// Orders whose saga is compensating, whether or not the store says so yet (a
    /// refusal's compensation is only progress, see `Order::must_be_stored`).
    compensating: Mutex<HashSet<String>>,
    finished: broadcast::Sender<String>,
    outbox: OutboxSignal,
    retry_max: Duration,
    step_delay: Option<Duration>,
    shutdown: Shutdown,
    /// Where inventory and payments keep each part of an order.
    shards: ShardCounts,
}

/// How the saga runner behaves: retry pacing and where the other roles' shards are.
pub struct SagaSettings {
    pub retry_max: Duration,
    pub shards: ShardCounts,
}

impl SagaRunner {
    pub fn new(
        book: OrderBook,
        client: ServiceClient,
        outbox: OutboxSignal,
        settings: SagaSettings,
        shutdown: Shutdown,
    ) -> SagaRunner {
        let step_delay = svc_platform::fault::delay(FAULT_STEP_DELAY_ENV);
        SagaRunner {
            book,
            client,
            active: Mutex::new(HashSet::new()),
            compensating: Mutex::new(HashSet::new()),
            finished: broadcast::channel(1024).0,
            outbox,
            retry_max: settings.retry_max,
            step_delay,
            shutdown,
            shards: settings.shards,
        }
    }

    /// The order `id` once its saga has ended, or as it is at `until` or when this
    /// instance stops, whichever comes first; `None` if there is no such order.
    ///
    /// A stopping instance's sagas stop with it (and resume after the restart), so
    /// nothing would end this one before `until`: waiting on would only hold up the
    /// drain, and keep this shard away for that long.
    pub async fn wait_for_outcome(
        &self,
        id: &str,
        until: tokio::time::Instant,
    ) -> Result<Option<Order>, StoreError> {
        // Subscribed before the first read: a saga ending in between is either seen by
        // that read or announced on the channel.
        let mut finished = self.finished.subscribe();
        loop {
            let order = match self.book.get(id)? {
                Some(order) if !order.is_final() => order,
                done_or_none => return Ok(done_or_none),
            };
            loop {
                let ended = tokio::select! {
                    ended = tokio::time::timeout_at(until, finished.recv()) => ended,
                    () = self.shutdown.wait() => return Ok(Some(self.book.get(id)?.unwrap_or(order))),
                };
                match ended {
                    // Another order ended: not worth a read (under load, every waiter
                    // hears of every order).
                    Ok(Ok(ended)) if ended != id => continue,
                    // This one ended, or announcements were missed: read again.
                    Ok(Ok(_) | Err(RecvError::Lagged(_))) => break,
                    // `until` passed (or the runner is gone): the order as it is now.
                    Err(_) | Ok(Err(RecvError::Closed)) => return Ok(Some(order)),
                }
            }
        }
    }

    /// Makes sure the saga of `id` runs and waits for it to end: up to `wait`, less if the
    /// caller's deadline is nearer or this instance stops (see [`Self::wait_for_outcome`]).
    /// What a request that starts or changes a saga answers with: the final order, or the
    /// order still `pending` if its saga takes longer.
    pub async fn drive_and_wait(
        self: &Arc<Self>,
        id: &str,
        wait: Duration,
    ) -> Result<Order, BookError> {
        self.drive(id.to_string());
        // Stop waiting before the caller's deadline: it gets the pending order, not a
        // timeout.
        let until = tokio::time::Instant::now() + client::deadline::bounded(wait);
        self.wait_for_outcome(id, until)
            .await?
            .ok_or_else(|| BookError::NotFound(id.to_string()))
    }

    /// Makes sure a task is driving `id`.
    pub fn drive(self: &Arc<Self>, id: String) {
        if !self.active.lock().insert(id.clone()) {
            return;
        }
        let runner = self.clone();
        tokio::spawn(async move {
            let shutdown = runner.shutdown.clone();
            tokio::select! {
                _ = runner.run(&id) => {}
                _ = shutdown.wait() => {}
            }
            runner.compensating.lock().remove(&id);
            runner.active.lock().remove(&id);
        });
    }

    /// Whether this instance's saga of `id` is compensating it: the order will end
    /// cancelled, whatever step the store still shows.
    pub fn is_compensating(&self, id: &str) -> bool {
        self.compensating.lock().contains(id)
    }

    /// As if this instance's saga of `id` had started compensating (tests).
    #[cfg(test)]
    pub fn mark_compensating(&self, id: &str) {
        self.compensating.lock().insert(id.to_string());
    }

    /// Resumes every unfinished saga; returns how many.
    pub fn resume_all(self: &Arc<Self>) -> anyhow::Result<usize> {
        let ids = self.book.unfinished()?;
        let n = ids.len();
        for id in ids {
            self.drive(id);
        }
        Ok(n)
    }

    async fn run(&self, id: &str) {
        // Jittered: after an outage, every pending order must not retry in lockstep.
        // `retry_max` is more than 0 (checked at load); one below the first pause caps it.
        let backoff = Backoff::new(RETRY_BASE.min(self.retry_max), self.retry_max);
        // Failed tries of the current step, for the backoff.
        let mut failures = 0u32;
        // The order after steps whose result is not stored (see `Order::must_be_stored`):
        // kept here, and redone after a crash, which every step's callee answers
        // idempotently.
        let mut progress: Option<Order> = None;
        loop {
            if let Some(delay) = self.step_delay {
                tokio::time::sleep(delay).await;
            }
            let stored = match self.book.get(id) {
                Ok(Some(order)) => order,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(order_id = id, error = %e, "cannot read the order");
                    tokio::time::sleep(self.retry_max).await;
                    continue;
                }
            };
            if stored.is_final() {
                let _ = self.finished.send(stored.id);
                return;
            }
            // A cancel request is only ever recorded in the store.
            let order = match progress.take() {
                Some(ahead) => ahead.with_cancel_request_of(&stored),
                None => stored,
            };
            let step = order.next_step();
            if step == Step::Compensate {
                self.compensating.lock().insert(order.id.clone());
            }
            // Each step is a child span of the request that created the order (whose
            // span the stored traceparent names), in that request's trace.
            let trace = order
                .traceparent
                .as_deref()
                .and_then(TraceContext::parse_traceparent)
                .map(|t| t.child())
                .unwrap_or_else(TraceContext::new_root);
            let work = svc_platform::unit_of_work!(&trace, "saga", order_id = %order.id);
            work.set_kind(svc_platform::telemetry::SpanKind::Internal);
            let performed = work
                .instrument(trace_context::scope(trace, self.perform(&order, step)))
                .await;
            // The step's own line: what `svc trace` hangs the step's calls under.
            let ok = performed.is_ok();
            let verdict = if ok { Verdict::Done } else { Verdict::Failed };
            svc_platform::end_unit_of_work!(work, verdict, "saga step", ?step, ok);
            match performed {
                Ok(outcome) => {
                    let next = order.after(step, outcome, now_ms());
                    if !next.must_be_stored() {
                        failures = 0;
                        progress = Some(next);
                        continue;
                    }
                    match self.book.save_step(&next).await {
                        Ok(evented) => {
                            failures = 0;
                            if evented {
                                self.outbox.notify();
                            }
                        }
                        Err(e) => {
                            tracing::error!(order_id = id, error = %e, "cannot store saga progress; retrying the step");
                            progress = Some(order);
                            let retry = backoff.delay(failures.saturating_add(1), &mut rand::rng());
                            tokio::time::sleep(retry).await;
                        }
                    }
                }
                Err(Retry::Transient(reason)) => {
                    failures = failures.saturating_add(1);
                    progress = Some(order);
                    let retry = backoff.delay(failures, &mut rand::rng());
                    tracing::warn!(order_id = id, ?step, %reason, retry_in = ?retry, "saga step will be retried");
                    tokio::time::sleep(retry).await;
                }
            }
        }
    }

    async fn perform(&self, order: &Order, step: Step) -> Result<Outcome, Retry> {
        let id = &order.id;
        let payments = placement::payments_shard(id, &self.shards);
        match step {
            Step::Reserve => self.reserve(order).await,
            Step::Authorize => {
                let amount = order.total_minor.unwrap_or(0);
                let body = match &order.legacy_card {
                    Some(card) => serde_json::json!({ "amount_minor": amount, "card": card }),
                    None => serde_json::json!({
                        "amount_minor": amount,
                        "card_on_file": order.card_on_file,
                    }),
                };
                let path = format!("/v1/payments/{id}/authorize");
                let call = Call::post(path).json(&body).shard(payments);
                Ok(self
                    .send(PAYMENTS, call)
                    .await?
                    .map_or_else(|refused| refused, |_| Outcome::Done))
            }
            Step::Commit => self.commit(order).await,
            Step::Capture => {
                let path = format!("/v1/payments/{id}/capture");
                match self
                    .send(PAYMENTS, Call::post(path).shard(payments))
                    .await?
                {
                    Ok(_) => Ok(Outcome::Done),
                    // An authorization we hold cannot be refused capture; if it is, a
                    // person must look: keep the order pending and say so loudly.
                    Err(Outcome::Refused(reason)) => {
                        tracing::error!(order_id = %id, %reason, "capture refused after commit");
                        Err(Retry::Transient(format!("capture refused: {reason}")))
                    }
                    Err(other) => Ok(other),
                }
            }
            Step::Compensate => {
                // Both calls are idempotent and safe for steps that never ran (they
                // leave a tombstone), which covers a request lost in flight.
                let release = format!("/v1/reservations/{id}/release");
                let shards = placement::lines_by_inventory_shard(&order.lines, &self.shards);
                let releases = shards
                    .keys()
                    .map(|s| self.send(INVENTORY, Call::post(release.as_str()).shard(*s)));
                for released in futures::future::join_all(releases).await {
                    if let Err(Outcome::Refused(r)) = released? {
                        return Err(Retry::Transient(format!("release refused: {r}")));
                    }
                }
                let void = format!("/v1/payments/{id}/void");
                let call = Call::post(void).shard(payments);
                if let Err(Outcome::Refused(r)) = self.send(PAYMENTS, call).await? {
                    return Err(Retry::Transient(format!("void refused: {r}")));
                }
                Ok(Outcome::Done)
            }
            Step::Done => Ok(Outcome::Done),
        }
    }

    /// Reserves the order's lines on every inventory shard that holds some, at once.
    /// A refusal anywhere refuses the order (compensation then releases every shard,
    /// including one whose answer was lost); otherwise a shard without an answer makes
    /// the step retry, which the shards that did reserve answer idempotently.
    async fn reserve(&self, order: &Order) -> Result<Outcome, Retry> {
        let bodies: Vec<(u32, serde_json::Value)> =
            placement::lines_by_inventory_shard(&order.lines, &self.shards)
                .into_iter()
                .map(|(shard, lines)| {
                    let lines: Vec<_> = lines
                        .iter()
                        .map(|l| serde_json::json!({ "sku": l.sku, "quantity": l.quantity }))
                        .collect();
                    let body = serde_json::json!({ "order_id": order.id, "lines": lines });
                    (shard, body)
                })
                .collect();
        let calls = bodies.iter().map(|(shard, body)| {
            let call = Call::post("/v1/reservations").json(body).shard(*shard);
            self.send(INVENTORY, call)
        });
        let mut parts = Vec::with_capacity(bodies.len());
        let mut unanswered = None;
        for answer in futures::future::join_all(calls).await {
            match answer.and_then(|sorted| match sorted {
                Ok(res) => reserved(&res),
                Err(refused) => Ok(refused),
            }) {
                Ok(part) => parts.push(part),
                Err(retry) => unanswered = Some(retry),
            }
        }
        let refused = parts.iter().any(|p| matches!(p, Outcome::Refused(_)));
        match unanswered {
            Some(retry) if !refused => Err(retry),
            _ => Ok(placement::merge_reservations(parts)),
        }
    }

    /// Commits the reservation on each inventory shard of the order, in shard order.
    async fn commit(&self, order: &Order) -> Result<Outcome, Retry> {
        let path = format!("/v1/reservations/{}/commit", order.id);
        let shards = placement::lines_by_inventory_shard(&order.lines, &self.shards);
        for (i, shard) in shards.keys().enumerate() {
            let call = Call::post(path.as_str()).shard(*shard);
            match self.send(INVENTORY, call).await? {
                Ok(_) => {}
                // The first shard commits first: its refusal means nothing is sold yet.
                Err(refused) if i == 0 => return Ok(refused),
                Err(refused) => {
                    let reason = match refused {
                        Outcome::Refused(r) => r,
                        other => format!("{other:?}"),
                    };
                    tracing::error!(order_id = %order.id, shard, %reason, "commit refused after an earlier inventory shard committed");
                    return Err(Retry::Transient(format!(
                        "commit refused on inventory shard {shard}: {reason}"
                    )));
                }
            }
        }
        Ok(Outcome::Done)
    }

    /// Makes a call and sorts the answer: `Ok(Ok(res))` success, `Ok(Err(Refused))` a
    /// refusal for good (4xx), `Err` worth retrying (no answer, 5xx, 408, 429).
    async fn send(
        &self,
        role: &str,
        call: Call<'_>,
    ) -> Result<Result<CallResponse, Outcome>, Retry> {
        // Every step is idempotent per order at the callee (reserve, commit, release,
        // authorize, capture, void), so the client may repeat a call that timed out.
        let res = self
            .client
            .call(role, call.idempotent())
            .await
            .map_err(|e| Retry::Transient(e.to_string()))?;
        match res.status {
            200..=299 => Ok(Ok(res)),
            408 | 429 => Err(Retry::Transient(format!("{role} answered {}", res.status))),
            400..=499 => Ok(Err(Outcome::Refused(res.problem_detail()))),
            _ => Err(Retry::Transient(format!(
                "{role} answered {}: {}",
                res.status,
                res.problem_detail()
            ))),
        }
    }
}

/// Reads inventory's reservation: held (or already committed) stock with its prices.
fn reserved(res: &CallResponse) -> Result<Outcome, Retry> {
    #[derive(serde::Deserialize)]
    struct Reservation {
        status: String,
        #[serde(default)]
        lines: Vec<ReservedLine>,
        #[serde(default)]
        total_minor: u64,
    }
    #[derive(serde::Deserialize)]
    struct ReservedLine {
        sku: String,
        price_minor: u64,
    }
    let r: Reservation = res
        .json()
        .map_err(|e| Retry::Transient(format!("unreadable reservation: {e}")))?;
    match r.status.as_str() {
        "held" | "committed" => Ok(Outcome::Reserved {
            prices: r
                .lines
                .into_iter()
                .map(|l| (l.sku, l.price_minor))
                .collect(),
            total_minor: r.total_minor,
        }),
        other => Ok(Outcome::Refused(format!(
            "the stock reservation was {other} before the order completed"
        ))),
    }
}
