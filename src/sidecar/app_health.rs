//! Whether the application answers: its health endpoint is asked every
//! `app.health_interval`, and the role's [`HealthGate`] follows (open on 2xx, closed on
//! anything else, no answer included), which makes the platform report the instance
//! not ready and deregister it while the application is unhealthy.

use std::time::Duration;

use svc_platform::health_gate::HealthGate;
use svc_platform::shutdown::Shutdown;

/// Asks `url` every `interval` until `shutdown`; the first answer opens the gate.
pub fn spawn_checker(url: String, interval: Duration, gate: HealthGate, shutdown: Shutdown) {
    tokio::spawn(async move {
        let client = reqwest::Client::new();
        loop {
            let healthy = is_healthy(&client, &url, interval).await;
            if gate.set_healthy(healthy) {
                if healthy {
                    tracing::info!(%url, "the application is healthy: ready");
                } else {
                    tracing::warn!(%url, "the application is not healthy: not ready");
                }
            }
            tokio::select! {
                _ = tokio::time::sleep(interval) => {}
                _ = shutdown.wait() => return,
            }
        }
    });
}

async fn is_healthy(client: &reqwest::Client, url: &str, timeout: Duration) -> bool {
    match client.get(url).timeout(timeout).send().await {
        Ok(answer) => answer.status().is_success(),
        Err(_) => false,
    }
}
