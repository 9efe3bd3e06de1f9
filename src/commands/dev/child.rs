//! One supervised child: a `svc run` instance that `svc dev` keeps alive until told to
//! stop.
//!
//! Guarantees: a child that exits after it has once been ready is restarted with the
//! same arguments (same instance id, port and data dir) after a backoff; one that exits
//! before its first ready line is reported as failed instead, since retrying a taken
//! port or a bad config would only hide the error. A child planned on port 0 comes back
//! on the port the OS gave it: its peers keep calling the address they know (their
//! views persist), so a restart while the registry is down does not cut it off. Should
//! that port be taken meanwhile, a run that never gets ready lets the OS choose again. Once a stop is requested nothing is
//! restarted: the running process gets SIGTERM, and SIGKILL after the grace period or
//! as soon as the stop becomes urgent.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;

use super::backoff::RestartBackoff;
use super::console;
use super::plan::InstanceSpec;
use super::process::Process;
use super::ready::ReadyLine;

/// How long a child may take to deregister and drain after SIGTERM.
const STOP_GRACE: Duration = Duration::from_secs(15);

/// What a supervisor tells `svc dev`.
#[derive(Debug)]
pub enum Event {
    Ready(ReadyLine),
    /// The child never became ready and will not be restarted.
    Failed {
        instance: String,
        reason: String,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    No,
    /// SIGTERM, then SIGKILL after [`STOP_GRACE`].
    Orderly,
    /// SIGKILL now (a second Ctrl-C).
    Now,
}

/// What every supervisor shares.
#[derive(Clone)]
pub struct Launcher {
    pub exe: PathBuf,
    /// Instance names are padded to this width so the `|` columns line up.
    pub label_width: usize,
    pub events: mpsc::UnboundedSender<Event>,
}

pub struct Supervisor {
    pub stop: watch::Sender<Stop>,
    pub task: JoinHandle<()>,
}

impl Launcher {
    /// Starts supervising `spec` at once; the returned handle stops it.
    pub fn start(&self, spec: InstanceSpec) -> Supervisor {
        let (stop, stop_rx) = watch::channel(Stop::No);
        let label: Arc<str> =
            format!("{:<width$}", spec.instance_id, width = self.label_width).into();
        let task = tokio::spawn(supervise(self.clone(), spec, label, stop_rx));
        Supervisor { stop, task }
    }
}

async fn supervise(
    launcher: Launcher,
    planned: InstanceSpec,
    label: Arc<str>,
    mut stop: watch::Receiver<Stop>,
) {
    let instance = planned.instance_id.as_str();
    let mut spec = planned.clone();
    let mut backoff = RestartBackoff::default();
    let mut ever_ready = false;
    loop {
        if *stop.borrow_and_update() != Stop::No {
            return;
        }
        let started = Instant::now();
        let (mut process, mut ready) = match Process::spawn(&launcher.exe, &spec, &label) {
            Ok(p) => p,
            Err(e) => {
                let reason = format!("cannot start {}: {e}", launcher.exe.display());
                if !ever_ready {
                    return fail(&launcher, instance, reason);
                }
                let delay = backoff.after_run(Duration::ZERO);
                console::note(format!("{instance}: {reason}; retrying in {delay:?}"));
                if stopped_during(delay, &mut stop).await {
                    return;
                }
                continue;
            }
        };

        let mut ready_this_run = false;
        let exit = loop {
            tokio::select! {
                status = process.wait() => break status,
                Some(line) = ready.recv() => {
                    ever_ready = true;
                    ready_this_run = true;
                    if planned.port == 0 {
                        if let Some(port) = bound_port(&line) {
                            spec = planned.listening_on(port);
                        }
                    }
                    // After start-up nobody listens any more; restarts need no report.
                    let _ = launcher.events.send(Event::Ready(line));
                }
                _ = stop.changed() => {
                    stop_process(instance, &mut process, &mut stop).await;
                    process.flush_output().await;
                    return;
                }
            }
        };
        process.flush_output().await;
        let status = match exit {
            Ok(status) => status.to_string(),
            Err(e) => format!("cannot wait for it: {e}"),
        };
        // It may have been hit by the same Ctrl-C as svc dev; that is no crash.
        if *stop.borrow() != Stop::No {
            return;
        }
        if !ever_ready {
            return fail(&launcher, instance, format!("it exited ({status})"));
        }
        if !ready_this_run && spec.port != planned.port {
            console::note(format!(
                "{instance} did not come back on port {}; the next start takes a free one",
                spec.port
            ));
            spec = planned.clone();
        }
        let uptime = started.elapsed();
        let delay = backoff.after_run(uptime);
        console::note(format!(
            "{instance} exited ({status}) after {:.1}s; restarting in {delay:?}",
            uptime.as_secs_f64()
        ));
        if stopped_during(delay, &mut stop).await {
            return;
        }
    }
}

/// The port a child listens on (`--listen`), from its ready line: its public address
/// if it has one (a public edge listens there), else its address.
fn bound_port(line: &ReadyLine) -> Option<u16> {
    reqwest::Url::parse(line.public_url())
        .ok()?
        .port_or_known_default()
}

fn fail(launcher: &Launcher, instance: &str, reason: String) {
    let _ = launcher.events.send(Event::Failed {
        instance: instance.to_string(),
        reason,
    });
}

/// Sleeps for `delay`; true if a stop was requested meanwhile.
async fn stopped_during(delay: Duration, stop: &mut watch::Receiver<Stop>) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => *stop.borrow() != Stop::No,
        _ = stop.changed() => true,
    }
}

async fn stop_process(instance: &str, process: &mut Process, stop: &mut watch::Receiver<Stop>) {
    if *stop.borrow_and_update() == Stop::Orderly {
        process.terminate();
        let grace = tokio::time::sleep(STOP_GRACE);
        tokio::pin!(grace);
        loop {
            tokio::select! {
                status = process.wait() => {
                    report_stopped(instance, status);
                    return;
                }
                _ = &mut grace => {
                    console::note(format!(
                        "{instance} did not stop within {}s; killing it",
                        STOP_GRACE.as_secs()
                    ));
                    break;
                }
                changed = stop.changed() => {
                    // A dropped sender means svc dev itself is going: do not linger.
                    if changed.is_err() || *stop.borrow_and_update() == Stop::Now {
                        break;
                    }
                }
            }
        }
    }
    report_stopped(instance, process.kill().await);
}

fn report_stopped(instance: &str, status: std::io::Result<std::process::ExitStatus>) {
    match status {
        Ok(status) => console::note(format!("{instance} stopped ({status})")),
        Err(e) => console::note(format!("{instance}: cannot wait for it to stop: {e}")),
    }
}
