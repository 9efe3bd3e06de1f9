//! The load: `concurrency` workers, each placing one order at a time through the
//! gateway until the duration is over, cycling through the bench products, and the
//! tally of what the orders ended as, with the latency of the confirmed ones.

use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// What the orders of one run ended as.
#[derive(Debug, Default)]
pub struct Outcome {
    /// From the first order sent to the last answer.
    pub wall: Duration,
    pub confirmed: u64,
    pub cancelled: u64,
    /// Answered 202: the saga had not ended within the gateway's wait.
    pub pending: u64,
    /// No answer, or an answer without an order status.
    pub errors: u64,
    /// Latency of each confirmed order, sorted.
    pub latencies: Vec<Duration>,
}

impl Outcome {
    pub fn orders_per_s(&self) -> f64 {
        self.confirmed as f64 / self.wall.as_secs_f64().max(1e-9)
    }

    /// The `q` quantile of the confirmed orders' latency (nearest rank), if any.
    pub fn latency(&self, q: f64) -> Option<Duration> {
        let n = self.latencies.len();
        if n == 0 {
            return None;
        }
        let rank = ((n as f64 * q).ceil() as usize).clamp(1, n);
        Some(self.latencies[rank - 1])
    }
}

/// Places orders through the gateway at `base` for `duration`, `concurrency` at a time.
pub async fn place_orders(
    http: &reqwest::Client,
    base: &str,
    skus: &[String],
    concurrency: usize,
    duration: Duration,
) -> anyhow::Result<Outcome> {
    let tally = Arc::new(Mutex::new(Outcome::default()));
    let started = Instant::now();
    let deadline = started + duration;
    let workers = (0..concurrency).map(|worker| {
        let (http, url, skus, tally) = (
            http.clone(),
            format!("{base}/api/v1/orders"),
            skus.to_vec(),
            tally.clone(),
        );
        tokio::spawn(async move {
            let mut next = worker;
            while Instant::now() < deadline {
                let sku = &skus[next % skus.len()];
                next += 1;
                let t0 = Instant::now();
                let status = order_status(&http, &url, sku).await;
                let elapsed = t0.elapsed();
                let mut t = tally.lock();
                match status.as_deref() {
                    Some("confirmed") => {
                        t.confirmed += 1;
                        t.latencies.push(elapsed);
                    }
                    Some("cancelled") => t.cancelled += 1,
                    Some("pending") => t.pending += 1,
                    _ => t.errors += 1,
                }
            }
        })
    });
    for w in futures::future::join_all(workers).await {
        w?;
    }
    let mut outcome = std::mem::take(&mut *tally.lock());
    outcome.wall = started.elapsed();
    outcome.latencies.sort();
    Ok(outcome)
}

/// Places one order of one unit of `sku`; the status it ended with, if it got one.
async fn order_status(http: &reqwest::Client, url: &str, sku: &str) -> Option<String> {
    let res = http
        .post(url)
        .json(&serde_json::json!({"lines": [{"sku": sku, "quantity": 1}]}))
        .send()
        .await
        .ok()?;
    let body = res.json::<serde_json::Value>().await.ok()?;
    body.get("status")?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut outcome = Outcome {
            wall: Duration::from_secs(2),
            confirmed: 100,
            latencies: (1..=100).map(Duration::from_millis).collect(),
            ..Outcome::default()
        };
        assert_eq!(outcome.orders_per_s(), 50.0);
        assert_eq!(outcome.latency(0.5), Some(Duration::from_millis(50)));
        assert_eq!(outcome.latency(0.99), Some(Duration::from_millis(99)));
        assert_eq!(outcome.latency(1.0), Some(Duration::from_millis(100)));
        outcome.latencies.clear();
        assert_eq!(outcome.latency(0.5), None);
    }
}
