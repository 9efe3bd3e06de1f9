//! The saga runner: drives each pending order through its steps until it ends.
//!
//! One task per unfinished order. Each iteration reads the order, runs its next step
//! against inventory or payments, and stores the result before the next step starts;
//! every step is idempotent per order at the callee, so repeating one after a crash or a
//! timeout is safe. A refusal (4xx) moves the order to compensation; anything else
//! (timeout, 5xx, no instance) is retried with backoff, forever, because giving up
//! half-way is the one thing a saga must not do. On start-up every unfinished order is
//! resumed; a shutdown simply stops the loops, which resume on the next start.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio::sync::broadcast;

use super::book::OrderBook;
use super::order::{Order, Outcome, Step};
use crate::platform::client::{Call, CallResponse, ServiceClient};
use crate::platform::events::OutboxSignal;
use crate::platform::registry_api::now_ms;
use crate::platform::shutdown::Shutdown;
use crate::platform::trace_context::{self, TraceContext};
use tracing::Instrument;

const RETRY_MIN: Duration = Duration::from_millis(100);

/// Test hook: pause this long before every saga step, so a test can kill the process
/// while sagas are in the middle. Never set in production.
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
    finished: broadcast::Sender<String>,
    outbox: OutboxSignal,
    retry_max: Duration,
    step_delay: Option<Duration>,
    shutdown: Shutdown,
}

impl SagaRunner {
    pub fn new(
        book: OrderBook,
        client: ServiceClient,
        outbox: OutboxSignal,
        retry_max: Duration,
        shutdown: Shutdown,
    ) -> SagaRunner {
        let step_delay = std::env::var(FAULT_STEP_DELAY_ENV)
            .ok()
            .and_then(|v| humantime::parse_duration(&v).ok());
        if let Some(d) = step_delay {
            tracing::warn!(delay = ?d, "fault injection: every saga step is delayed");
        }
        SagaRunner {
            book,
            client,
            active: Mutex::new(HashSet::new()),
            finished: broadcast::channel(1024).0,
            outbox,
            retry_max,
            step_delay,
            shutdown,
        }
    }

    /// Ids of orders whose saga ends, as they end.
    pub fn subscribe(&self) -> broadcast::Receiver<String> {
        self.finished.subscribe()
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
            runner.active.lock().remove(&id);
        });
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
        let mut retry = RETRY_MIN;
        loop {
            if let Some(delay) = self.step_delay {
                tokio::time::sleep(delay).await;
            }
            let order = match self.book.get(id) {
                Ok(Some(order)) => order,
                Ok(None) => return,
                Err(e) => {
                    tracing::error!(order_id = id, error = %e, "cannot read the order");
                    tokio::time::sleep(self.retry_max).await;
                    continue;
                }
            };
            if order.is_final() {
                let _ = self.finished.send(order.id);
                return;
            }
            let step = order.next_step();
            // Each step is a child span of the trace that created the order.
            let trace = order
                .traceparent
                .as_deref()
                .and_then(TraceContext::parse_traceparent)
                .map(|t| t.child())
                .unwrap_or_else(TraceContext::new_root);
            let span = tracing::info_span!(
                "saga",
                order_id = %order.id,
                trace_id = %trace.trace_id_hex(),
                span_id = %trace.span_id_hex(),
            );
            let performed = trace_context::scope(trace, self.perform(&order, step))
                .instrument(span)
                .await;
            match performed {
                Ok(outcome) => {
                    let next = order.after(step, outcome, now_ms());
                    let book = self.book.clone();
                    let saved = tokio::task::spawn_blocking(move || book.save_step(&next)).await;
                    match saved {
                        Ok(Ok(evented)) => {
                            retry = RETRY_MIN;
                            if evented {
                                self.outbox.notify();
                            }
                        }
                        Ok(Err(e)) => {
                            tracing::error!(order_id = id, error = %e, "cannot store saga progress; retrying the step");
                            tokio::time::sleep(retry).await;
                        }
                        Err(e) => {
                            tracing::error!(order_id = id, error = %e, "saga store task failed")
                        }
                    }
                }
                Err(Retry::Transient(reason)) => {
                    tracing::warn!(order_id = id, ?step, %reason, retry_in = ?retry, "saga step will be retried");
                    tokio::time::sleep(retry).await;
                    retry = (retry * 2).min(self.retry_max);
                }
            }
        }
    }

    async fn perform(&self, order: &Order, step: Step) -> Result<Outcome, Retry> {
        let id = &order.id;
        match step {
            Step::Reserve => {
                let lines: Vec<_> = order
                    .lines
                    .iter()
                    .map(|l| serde_json::json!({ "sku": l.sku, "quantity": l.quantity }))
                    .collect();
                let body = serde_json::json!({ "order_id": id, "lines": lines });
                let res = self
                    .send("inventory", Call::post("/v1/reservations").json(&body))
                    .await?;
                let res = match res {
                    Ok(res) => res,
                    Err(refused) => return Ok(refused),
                };
                reserved(&res)
            }
            Step::Authorize => {
                let body = serde_json::json!({
                    "amount_minor": order.total_minor.unwrap_or(0),
                    "card": order.card,
                });
                let path = format!("/v1/payments/{id}/authorize");
                Ok(self
                    .send("payments", Call::post(path).json(&body))
                    .await?
                    .map_or_else(|refused| refused, |_| Outcome::Done))
            }
            Step::Commit => {
                let path = format!("/v1/reservations/{id}/commit");
                Ok(self
                    .send("inventory", Call::post(path))
                    .await?
                    .map_or_else(|refused| refused, |_| Outcome::Done))
            }
            Step::Capture => {
                let path = format!("/v1/payments/{id}/capture");
                match self.send("payments", Call::post(path)).await? {
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
                if let Err(Outcome::Refused(r)) =
                    self.send("inventory", Call::post(release)).await?
                {
                    return Err(Retry::Transient(format!("release refused: {r}")));
                }
                let void = format!("/v1/payments/{id}/void");
                if let Err(Outcome::Refused(r)) = self.send("payments", Call::post(void)).await? {
                    return Err(Retry::Transient(format!("void refused: {r}")));
                }
                Ok(Outcome::Done)
            }
            Step::Done => Ok(Outcome::Done),
        }
    }

    /// Makes a call and sorts the answer: `Ok(Ok(res))` success, `Ok(Err(Refused))` a
    /// refusal for good (4xx), `Err` worth retrying (no answer, 5xx, 408, 429).
    async fn send(
        &self,
        role: &str,
        call: Call<'_>,
    ) -> Result<Result<CallResponse, Outcome>, Retry> {
        let res = self
            .client
            .call(role, call)
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
