//! Start-up: the registry first, then every other instance at once, then the proof that
//! each one is registered.
//!
//! Guarantees: start-up succeeds only when every instance has printed its ready line
//! and the registry's catalog lists every instance that registers; it fails as soon as
//! a child dies before being ready, or at the deadline, naming what it still waited for.
//! A stop signal ends it early without error (the caller then stops what was started).

use std::sync::Arc;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};
use svc_platform::tls::TlsMaterial;

use tokio::sync::mpsc;
use tokio::time::sleep_until;

use super::child::{Event, Launcher};
use super::fleet::Fleet;
use super::plan::{InstanceSpec, Plan};
use super::ready::ReadyLine;
use super::signals::StopSignals;
use svc_platform::registry_client::RegistryClient;

/// How often to ask the registry whether everyone is in its catalog.
const CATALOG_POLL: Duration = Duration::from_millis(100);

#[derive(Debug, thiserror::Error)]
pub enum StartupError {
    #[error("{instance} failed before it was ready: {reason} (its log is above)")]
    ChildFailed { instance: String, reason: String },
    #[error("start-up did not finish within {}s: still waiting for {waiting} {what}", timeout.as_secs())]
    Timeout {
        timeout: Duration,
        waiting: String,
        what: String,
    },
    #[error("cannot build the registry client: {0}")]
    Client(String),
}

pub enum Outcome {
    /// Ready lines by instance id.
    Ready(BTreeMap<String, ReadyLine>),
    Interrupted(&'static str),
}

/// Everything start-up needs to watch.
pub struct Watch<'a> {
    pub events: &'a mut mpsc::UnboundedReceiver<Event>,
    pub signals: &'a mut StopSignals,
    pub started: Instant,
    pub timeout: Duration,
}

impl Watch<'_> {
    fn deadline(&self) -> tokio::time::Instant {
        (self.started + self.timeout).into()
    }

    fn timed_out(&self, waiting: impl IntoIterator<Item = String>, what: &str) -> StartupError {
        StartupError::Timeout {
            timeout: self.timeout,
            waiting: waiting.into_iter().collect::<Vec<_>>().join(", "),
            what: what.to_string(),
        }
    }
}

/// Starts every instance of `plan` into `fleet` and waits until all are up.
pub async fn start(
    plan: &Plan,
    launcher: &Launcher,
    fleet: &mut Fleet,
    watch: &mut Watch<'_>,
    tls: Option<&Arc<TlsMaterial>>,
) -> Result<Outcome, StartupError> {
    let mut ready = BTreeMap::new();

    // The others register as soon as they are ready; with the registry up first, the
    // first attempt succeeds instead of waiting for a background retry.
    fleet.registry.push(launcher.start(plan.registry.clone()));
    if let Some(signal) = wait_ready([&plan.registry], &mut ready, watch).await? {
        return Ok(Outcome::Interrupted(signal));
    }

    for spec in &plan.others {
        fleet.others.push(launcher.start(spec.clone()));
    }
    if let Some(signal) = wait_ready(&plan.others, &mut ready, watch).await? {
        return Ok(Outcome::Interrupted(signal));
    }

    if let Some(signal) = wait_registered(plan, watch, tls).await? {
        return Ok(Outcome::Interrupted(signal));
    }
    Ok(Outcome::Ready(ready))
}

/// Waits for the ready line of each of `specs`; `Some(signal)` if a stop signal came.
async fn wait_ready<'s>(
    specs: impl IntoIterator<Item = &'s InstanceSpec>,
    ready: &mut BTreeMap<String, ReadyLine>,
    watch: &mut Watch<'_>,
) -> Result<Option<&'static str>, StartupError> {
    let mut pending: BTreeSet<String> = specs
        .into_iter()
        .map(|s| s.instance_id.clone())
        .filter(|id| !ready.contains_key(id))
        .collect();
    let deadline = watch.deadline();
    while !pending.is_empty() {
        tokio::select! {
            event = watch.events.recv() => match event {
                Some(Event::Ready(line)) => {
                    pending.remove(&line.instance);
                    ready.insert(line.instance.clone(), line);
                }
                Some(Event::Failed { instance, reason }) => {
                    return Err(StartupError::ChildFailed { instance, reason });
                }
                // The launcher holds a sender for as long as start-up runs.
                None => return Err(watch.timed_out(pending, "(no supervisor left)")),
            },
            signal = watch.signals.recv() => return Ok(Some(signal)),
            _ = sleep_until(deadline) => {
                return Err(watch.timed_out(pending, "to print its ready line"));
            }
        }
    }
    Ok(None)
}

/// Polls the registry until its catalog lists every registering instance of `plan`.
async fn wait_registered(
    plan: &Plan,
    watch: &mut Watch<'_>,
    tls: Option<&Arc<TlsMaterial>>,
) -> Result<Option<&'static str>, StartupError> {
    let client = RegistryClient::new(vec![plan.registry_url.clone()], Duration::from_secs(2), tls)
        .map_err(|e| StartupError::Client(format!("{e:#}")))?;
    let deadline = watch.deadline();
    // None until the registry has answered once.
    let mut missing: Option<Vec<String>> = None;
    let mut last_error = None;
    loop {
        tokio::select! {
            answer = client.catalog_from_any() => match answer {
                Ok((_, catalog)) => {
                    last_error = None;
                    let now_missing: Vec<String> = plan
                        .others
                        .iter()
                        .filter(|s| s.registers)
                        .filter(|s| {
                            !catalog
                                .instances(&s.role)
                                .iter()
                                .any(|i| i.instance_id == s.instance_id)
                        })
                        .map(|s| s.instance_id.clone())
                        .collect();
                    if now_missing.is_empty() {
                        return Ok(None);
                    }
                    missing = Some(now_missing);
                }
                Err(e) => last_error = Some(e.to_string()),
            },
            signal = watch.signals.recv() => return Ok(Some(signal)),
            _ = sleep_until(deadline) => break,
        }
        tokio::select! {
            _ = tokio::time::sleep(CATALOG_POLL) => {}
            signal = watch.signals.recv() => return Ok(Some(signal)),
            _ = sleep_until(deadline) => break,
        }
    }
    let last_error = last_error
        .map(|e| format!(" (last error: {e})"))
        .unwrap_or_default();
    Err(match missing {
        Some(missing) => watch.timed_out(
            missing,
            &format!("to appear in the registry's catalog{last_error}"),
        ),
        None => watch.timed_out(
            [plan.registry.instance_id.clone()],
            &format!("to answer {}/v1/catalog{last_error}", plan.registry_url),
        ),
    })
}
