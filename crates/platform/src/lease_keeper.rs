//! Keeps this instance registered at every configured registry.
//!
//! One loop per registry, independent of the others: register, then renew at the
//! interval the registry asks for. A registry that forgot the lease (404) gets a fresh
//! registration at once; one that is down is retried quietly until it comes back, which
//! is how a restarted or replaced registry is refilled within one renewal interval.
//! A registry that refuses the registration (409: another live instance holds our
//! shard) is an operator's mistake, not an outage: it is logged as an error, repeated
//! while it lasts, and retried slowly, so this instance takes the shard over once the
//! other holder is gone. [`LeaseKeeper::deregister_all`] stops the loops first, so
//! nothing re-registers after; [`LeaseKeeper::start`] may then start them again (a
//! sidecar whose application recovered).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;

use super::registry_api::Registration;
use super::registry_client::{RegistryClient, RegistryError};

/// Retry pause while a registry is unreachable or refuses us.
const RETRY_PAUSE: Duration = Duration::from_millis(500);
/// Retry pause while a registry refuses the registration itself (409).
const REFUSED_PAUSE: Duration = Duration::from_secs(2);
/// While refused, the error is logged again every this many attempts (about 30 s).
const REFUSED_REMINDER_EVERY: u32 = 15;

pub(crate) struct LeaseKeeper {
    client: RegistryClient,
    registration: Registration,
    /// The stop signal of the loops started last: each start gets its own, so loops
    /// stopped once never run again.
    stop: std::sync::Mutex<watch::Sender<bool>>,
    /// Registries currently holding our lease.
    holding: Arc<AtomicUsize>,
}

impl LeaseKeeper {
    pub(crate) fn new(client: RegistryClient, registration: Registration) -> LeaseKeeper {
        LeaseKeeper {
            client,
            registration,
            stop: std::sync::Mutex::new(watch::channel(true).0),
            holding: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// How many registries currently hold this instance's lease.
    pub(crate) fn holding(&self) -> usize {
        self.holding.load(Ordering::Relaxed)
    }

    /// Starts one loop per registry and waits until every registry has either accepted
    /// the first registration or failed once, so start-up knows where it stands without
    /// waiting on a registry that is down. Returns how many accepted.
    pub(crate) async fn start(&self) -> usize {
        let stop = {
            let mut current = self.stop.lock().expect("lease keeper lock");
            current.send_replace(true); // loops of an earlier start, if any, end
            *current = watch::channel(false).0;
            current.subscribe()
        };
        let mut first_attempts = Vec::new();
        for url in self.client.urls() {
            let (tx, rx) = tokio::sync::oneshot::channel();
            first_attempts.push(rx);
            tokio::spawn(keep_lease(
                self.client.clone(),
                url.clone(),
                self.registration.clone(),
                stop.clone(),
                self.holding.clone(),
                tx,
            ));
        }
        let mut accepted = 0;
        for rx in first_attempts {
            if rx.await.unwrap_or(false) {
                accepted += 1;
            }
        }
        accepted
    }

    /// Stops renewing and removes the registration from every registry that answers.
    pub(crate) async fn deregister_all(&self) {
        self.stop
            .lock()
            .expect("lease keeper lock")
            .send_replace(true);
        let reg = &self.registration;
        let calls = self.client.urls().iter().map(|url| async move {
            if let Err(e) = self.client.deregister(url, &reg.role, &reg.instance_id).await {
                tracing::warn!(registry = %url, error = %e, "deregistration failed; the lease will expire");
            }
        });
        futures::future::join_all(calls).await;
        self.holding.store(0, Ordering::Relaxed);
    }
}

async fn keep_lease(
    client: RegistryClient,
    url: String,
    reg: Registration,
    mut stop: watch::Receiver<bool>,
    holding: Arc<AtomicUsize>,
    first: tokio::sync::oneshot::Sender<bool>,
) {
    let mut first = Some(first);
    let mut registered = false;
    let mut renew_every = RETRY_PAUSE;
    let mut healthy = true; // log transitions only, not every failed attempt
    let mut refusals = 0u32;
    loop {
        if *stop.borrow() {
            return;
        }
        let result = if registered {
            client.renew(&url, &reg.role, &reg.instance_id).await
        } else {
            client.register(&url, &reg).await
        };
        // Deregistration may have started while the call was in flight.
        if *stop.borrow() {
            return;
        }
        let pause = match result {
            Ok(grant) => {
                if refusals > 0 {
                    tracing::info!(registry = %url, after = refusals, "registration accepted after being refused");
                }
                refusals = 0;
                if !registered {
                    tracing::info!(registry = %url, index = grant.index, "registered");
                    holding.fetch_add(1, Ordering::Relaxed);
                } else if !healthy {
                    tracing::info!(registry = %url, "registry reachable again; lease renewed");
                }
                registered = true;
                healthy = true;
                renew_every = Duration::from_millis(grant.renew_interval_ms.max(50));
                renew_every
            }
            Err(RegistryError::UnknownInstance { .. }) => {
                tracing::info!(registry = %url, "registry does not know this lease; registering again");
                if registered {
                    holding.fetch_sub(1, Ordering::Relaxed);
                }
                registered = false;
                Duration::ZERO
            }
            Err(RegistryError::Conflict { detail, .. }) => {
                if refusals.is_multiple_of(REFUSED_REMINDER_EVERY) {
                    tracing::error!(
                        registry = %url,
                        %detail,
                        retry_every = ?REFUSED_PAUSE,
                        "registry refused this instance; it gets no traffic until the registration is accepted"
                    );
                }
                refusals = refusals.saturating_add(1);
                if registered {
                    holding.fetch_sub(1, Ordering::Relaxed);
                }
                registered = false;
                REFUSED_PAUSE
            }
            Err(e) => {
                if healthy {
                    tracing::warn!(registry = %url, error = %e, "registry call failed; will keep trying");
                }
                healthy = false;
                RETRY_PAUSE.min(renew_every)
            }
        };
        if let Some(tx) = first.take() {
            let _ = tx.send(registered);
        }
        tokio::select! {
            _ = tokio::time::sleep(pause) => {}
            _ = stop.wait_for(|s| *s) => return,
        }
    }
}
