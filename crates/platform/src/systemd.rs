//! systemd's notify protocol: tell the service manager when the instance is ready, when it
//! reloads (`RELOADING=1` with `MONOTONIC_USEC`, then `READY=1`: `Type=notify-reload`),
//! when it starts stopping, and that its event loop is still alive (the watchdog).
//! Reload messages go out only between `READY=1` and `STOPPING=1`: a SIGHUP while
//! starting or draining must not tell systemd the instance is ready.
//!
//! The protocol is one datagram per message, `KEY=VALUE` lines, sent to the unix socket
//! named by `$NOTIFY_SOCKET` (a leading `@` means the abstract namespace). It is small
//! enough that a dependency would be larger than the code, so it lives here.
//!
//! Without `$NOTIFY_SOCKET` (not under systemd, or `Type=` is not `notify`) every call is
//! a no-op, so the lifecycle calls it unconditionally. A failed send is logged once and
//! never stops the instance: systemd is the one that acts on a missing `READY=1` or
//! watchdog ping, and it will.
//!
//! The watchdog pings come from a task on the runtime that runs the lifecycle, at half
//! of `WatchdogSec`, so a stalled main event loop stops the pings and systemd restarts
//! the instance.

use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Where to send notifications, from `$NOTIFY_SOCKET`; `None` when it is unset or empty.
#[derive(Debug, Clone, PartialEq, Eq)]
enum NotifyTarget {
    Path(PathBuf),
    /// Linux abstract socket name (without the leading `@`).
    Abstract(Vec<u8>),
}

impl NotifyTarget {
    fn parse(value: &str) -> Option<NotifyTarget> {
        if value.is_empty() {
            None
        } else if let Some(name) = value.strip_prefix('@') {
            Some(NotifyTarget::Abstract(name.as_bytes().to_vec()))
        } else {
            Some(NotifyTarget::Path(PathBuf::from(value)))
        }
    }
}

/// The watchdog period systemd asked for, halved as `sd_watchdog_enabled(3)` advises:
/// `$WATCHDOG_USEC` set and `$WATCHDOG_PID` unset or this process.
pub(crate) fn watchdog_ping_interval(
    usec: Option<&str>,
    pid: Option<&str>,
    my_pid: u32,
) -> Option<Duration> {
    let usec: u64 = usec?.trim().parse().ok().filter(|u| *u > 0)?;
    if let Some(pid) = pid {
        if pid.trim().parse::<u32>().ok()? != my_pid {
            return None;
        }
    }
    Some(Duration::from_micros(usec / 2).max(Duration::from_millis(1)))
}

/// Sends notify messages to systemd; cheap to clone, a no-op when not under systemd.
#[derive(Clone)]
pub(crate) struct Notifier {
    inner: Option<Arc<Inner>>,
}

struct Inner {
    target: NotifyTarget,
    socket: UnixDatagram,
    /// Whether a failed send was logged already (one warning, not one per ping).
    warned: AtomicBool,
    /// [`STARTING`], [`READY`] or [`STOPPING`]: what systemd was told last.
    phase: AtomicU8,
}

const STARTING: u8 = 0;
const READY: u8 = 1;
const STOPPING: u8 = 2;

/// `CLOCK_MONOTONIC` in microseconds, as `MONOTONIC_USEC=` wants it (systemd compares it
/// with its own clock to tell this reload from an earlier one).
fn monotonic_usec() -> u64 {
    use nix::time::{clock_gettime, ClockId};
    clock_gettime(ClockId::CLOCK_MONOTONIC).map_or(0, |t| {
        t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000
    })
}

impl Notifier {
    /// A notifier for `$NOTIFY_SOCKET`, or a silent one if it is unset or unusable.
    pub(crate) fn from_env() -> Notifier {
        let target = std::env::var("NOTIFY_SOCKET")
            .ok()
            .and_then(|v| NotifyTarget::parse(&v));
        Notifier::new(target)
    }

    fn new(target: Option<NotifyTarget>) -> Notifier {
        let inner = target.and_then(|target| match UnixDatagram::unbound() {
            Ok(socket) => Some(Arc::new(Inner {
                target,
                socket,
                warned: AtomicBool::new(false),
                phase: AtomicU8::new(STARTING),
            })),
            Err(e) => {
                tracing::warn!(error = %e, "cannot create the systemd notify socket; not notifying");
                None
            }
        });
        Notifier { inner }
    }

    /// Whether a service manager is listening (for log lines only).
    #[cfg(test)]
    fn is_active(&self) -> bool {
        self.inner.is_some()
    }

    /// `READY=1` with a human status line (`systemctl status` shows it).
    pub(crate) fn ready(&self, status: &str) {
        self.set_phase(READY);
        self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
    }

    /// `RELOADING=1` and the time it began: a reload (SIGHUP) starts. Only while ready.
    pub(crate) fn reloading(&self) {
        if self.phase() == Some(READY) {
            self.send(&format!(
                "RELOADING=1\nMONOTONIC_USEC={}\nSTATUS=reloading",
                monotonic_usec()
            ));
        }
    }

    /// `READY=1` again: the reload is done. Only while ready (not once stopping).
    pub(crate) fn reloaded(&self, status: &str) {
        if self.phase() == Some(READY) {
            self.send(&format!("READY=1\nSTATUS={}", one_line(status)));
        }
    }

    /// `STOPPING=1`: the unit shows "deactivating" while the instance drains.
    pub(crate) fn stopping(&self, status: &str) {
        self.set_phase(STOPPING);
        self.send(&format!("STOPPING=1\nSTATUS={}", one_line(status)));
    }

    fn phase(&self) -> Option<u8> {
        Some(self.inner.as_ref()?.phase.load(Ordering::Acquire))
    }

    fn set_phase(&self, phase: u8) {
        if let Some(inner) = &self.inner {
            inner.phase.store(phase, Ordering::Release);
        }
    }

    fn watchdog(&self) {
        self.send("WATCHDOG=1");
    }

    /// Sends one message; failures are logged once.
    fn send(&self, message: &str) {
        let Some(inner) = &self.inner else { return };
        if let Err(e) = inner.send(message.as_bytes()) {
            if !inner.warned.swap(true, Ordering::Relaxed) {
                tracing::warn!(error = %e, target = ?inner.target, "cannot notify systemd");
            }
        }
    }

    /// Pings the watchdog every `interval` from the current runtime until the process
    /// exits (also while draining: systemd may keep enforcing it while the unit stops).
    /// If this runtime stalls, the pings stop and systemd acts.
    pub(crate) fn spawn_watchdog(&self, interval: Duration) {
        if self.inner.is_none() {
            return;
        }
        let notifier = self.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(interval);
            // A late tick means the loop was stalled: ping once, do not burst.
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            loop {
                tick.tick().await;
                notifier.watchdog();
            }
        });
    }
}

impl Inner {
    fn send(&self, message: &[u8]) -> std::io::Result<()> {
        match &self.target {
            NotifyTarget::Path(path) => self.socket.send_to(message, path).map(drop),
            NotifyTarget::Abstract(name) => send_abstract(&self.socket, name, message),
        }
    }
}

#[cfg(target_os = "linux")]
fn send_abstract(socket: &UnixDatagram, name: &[u8], message: &[u8]) -> std::io::Result<()> {
    use std::os::linux::net::SocketAddrExt;
    let addr = std::os::unix::net::SocketAddr::from_abstract_name(name)?;
    socket.send_to_addr(message, &addr).map(drop)
}

#[cfg(not(target_os = "linux"))]
fn send_abstract(_: &UnixDatagram, _: &[u8], _: &[u8]) -> std::io::Result<()> {
    Err(std::io::Error::new(
        std::io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

/// A status must stay on its line: a newline would start another `KEY=` assignment.
fn one_line(status: &str) -> String {
    status.replace(['\n', '\r'], " ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn notify_socket_forms() {
        assert_eq!(NotifyTarget::parse(""), None);
        assert_eq!(
            NotifyTarget::parse("/run/systemd/notify"),
            Some(NotifyTarget::Path("/run/systemd/notify".into()))
        );
        assert_eq!(
            NotifyTarget::parse("@svc/notify"),
            Some(NotifyTarget::Abstract(b"svc/notify".to_vec()))
        );
    }

    #[test]
    fn watchdog_is_half_the_period_and_only_for_us() {
        let half = Some(Duration::from_millis(100));
        assert_eq!(watchdog_ping_interval(Some("200000"), None, 7), half);
        assert_eq!(watchdog_ping_interval(Some("200000"), Some("7"), 7), half);
        assert_eq!(watchdog_ping_interval(Some("200000"), Some("8"), 7), None);
        assert_eq!(watchdog_ping_interval(None, None, 7), None);
        assert_eq!(watchdog_ping_interval(Some("0"), None, 7), None);
        assert_eq!(watchdog_ping_interval(Some("soon"), None, 7), None);
    }

    #[test]
    fn messages_reach_a_path_socket_and_an_abstract_one() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        Notifier::new(Some(NotifyTarget::Path(path))).ready("serving\non :1");
        let mut buf = [0u8; 256];
        let n = listener.recv(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"READY=1\nSTATUS=serving on :1");

        #[cfg(target_os = "linux")]
        {
            use std::os::linux::net::SocketAddrExt;
            let name = format!("svc-test-{}", std::process::id());
            let addr = std::os::unix::net::SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
            let listener = UnixDatagram::bind_addr(&addr).unwrap();
            Notifier::new(NotifyTarget::parse(&format!("@{name}"))).watchdog();
            let n = listener.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], b"WATCHDOG=1");
        }
    }

    #[test]
    fn reloads_are_told_only_while_ready() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let listener = UnixDatagram::bind(&path).unwrap();
        listener.set_nonblocking(true).unwrap();
        let mut buf = [0u8; 256];
        let mut next = || {
            let n = listener.recv(&mut buf).ok()?;
            Some(String::from_utf8_lossy(&buf[..n]).into_owned())
        };
        let n = Notifier::new(Some(NotifyTarget::Path(path)));
        n.reloading();
        n.reloaded("x");
        assert_eq!(next(), None, "nothing while starting");
        n.ready("up");
        assert_eq!(next().as_deref(), Some("READY=1\nSTATUS=up"));
        let before = monotonic_usec();
        n.reloading();
        let reloading = next().unwrap();
        let mut lines = reloading.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"));
        let usec: u64 = lines.next().unwrap()["MONOTONIC_USEC=".len()..]
            .parse()
            .unwrap();
        assert!(usec >= before && usec <= monotonic_usec(), "{reloading}");
        n.reloaded("done");
        assert_eq!(next().as_deref(), Some("READY=1\nSTATUS=done"));
        n.stopping("bye");
        assert!(next().unwrap().starts_with("STOPPING=1"));
        n.reloading();
        n.reloaded("x");
        assert_eq!(next(), None, "nothing once stopping");
    }

    #[test]
    fn without_a_socket_nothing_happens() {
        let n = Notifier::new(None);
        assert!(!n.is_active());
        n.ready("x");
        n.stopping("x");
    }
}
