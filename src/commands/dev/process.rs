//! One running `svc run` process, as `svc dev` starts it.
//!
//! Guarantees: the process cannot outlive `svc dev` (on Linux it gets SIGTERM when
//! `svc dev` dies, however it dies; the handle also kills it when dropped); it sees only
//! the settings `svc dev` passes (no inherited `SVC_*` variables); every line it writes
//! on stdout or stderr is echoed to our stderr behind its label, and its ready lines are
//! handed to the caller.

use std::io;
use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;
use tokio::io::{AsyncBufReadExt as _, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::console;
use super::plan::InstanceSpec;
use super::ready::ReadyLine;

/// How long to wait for the last output lines after the process exited. Only a
/// grandchild still holding the pipes could make it longer, and none should exist.
const OUTPUT_FLUSH: Duration = Duration::from_secs(2);

pub struct Process {
    child: Child,
    pumps: Vec<JoinHandle<()>>,
}

/// The ready lines of one process, in the order it printed them.
pub type ReadyLines = mpsc::UnboundedReceiver<ReadyLine>;

impl Process {
    pub fn spawn(
        exe: &Path,
        spec: &InstanceSpec,
        label: &Arc<str>,
    ) -> io::Result<(Process, ReadyLines)> {
        let mut command = Command::new(exe);
        command
            .args(&spec.args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        // The user's SVC_CONFIG (or any SVC_*) would silently change a child that
        // `svc dev` configures with explicit flags.
        for (key, _) in std::env::vars_os() {
            if key.to_string_lossy().starts_with("SVC_") {
                command.env_remove(key);
            }
        }
        die_with_parent(&mut command);
        let mut child = command.spawn()?;

        let missing = || io::Error::other("child pipes were not set up");
        let stdout = child.stdout.take().ok_or_else(missing)?;
        let stderr = child.stderr.take().ok_or_else(missing)?;
        let (ready_tx, ready) = mpsc::unbounded_channel();
        let pumps = vec![
            tokio::spawn(pump(stdout, label.clone(), Some(ready_tx))),
            tokio::spawn(pump(stderr, label.clone(), None)),
        ];
        Ok((Process { child, pumps }, ready))
    }

    /// Waits for the process to exit. Cancel-safe, so it can sit in a `select!`.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        self.child.wait().await
    }

    /// Asks the process to stop the orderly way (deregister, drain).
    pub fn terminate(&self) {
        if let Some(pid) = self.child.id().and_then(|id| i32::try_from(id).ok()) {
            // ESRCH only means it is already gone, which is what we want.
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }

    /// Kills the process and waits for it.
    pub async fn kill(&mut self) -> io::Result<ExitStatus> {
        // Fails only if it already exited; wait() then returns that status.
        let _ = self.child.start_kill();
        self.child.wait().await
    }

    /// Waits (briefly) until every output line of the exited process has been echoed.
    pub async fn flush_output(self) {
        for mut pump in self.pumps {
            if tokio::time::timeout(OUTPUT_FLUSH, &mut pump).await.is_err() {
                pump.abort();
            }
        }
    }
}

#[cfg(target_os = "linux")]
fn die_with_parent(command: &mut Command) {
    let parent = nix::unistd::getpid();
    // SAFETY: the closure runs in the forked child before exec; it makes only two
    // system calls and neither allocates nor takes a lock, as `pre_exec` requires.
    unsafe {
        command.pre_exec(move || {
            // Delivered when the thread that forked us exits: `svc dev` spawns children
            // from its main thread only (a current-thread runtime), which lives as long
            // as the process does.
            nix::sys::prctl::set_pdeathsig(Signal::SIGTERM)?;
            // Had `svc dev` died before the prctl, the signal would never come.
            if nix::unistd::getppid() != parent {
                return Err(nix::errno::Errno::ESRCH.into());
            }
            Ok(())
        });
    }
}

#[cfg(not(target_os = "linux"))]
fn die_with_parent(_command: &mut Command) {}

/// Echoes every line of `reader`; on stdout also reports the ready lines.
async fn pump(
    reader: impl AsyncRead + Unpin,
    label: Arc<str>,
    ready: Option<mpsc::UnboundedSender<ReadyLine>>,
) {
    let mut reader = BufReader::new(reader);
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match reader.read_until(b'\n', &mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
        // A child's log may carry bytes that are not UTF-8; show them rather than stop.
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\n', '\r']);
        console::echo(&label, text);
        if let Some(ready) = &ready {
            if let Some(line) = ReadyLine::parse(text) {
                // The supervisor may be gone while stopping; the line was echoed anyway.
                let _ = ready.send(line);
            }
        }
    }
}
