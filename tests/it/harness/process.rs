//! Process control: the `svc` command with a clean environment, one running child
//! ([`Svc`]: spawned, ready once it printed its ready line, signalled, reaped), and a
//! command run to its end ([`run_to_exit`]).
//!
//! A child is SIGKILLed and reaped when its [`Svc`] drops, also when the test panics
//! (then its last stderr lines are printed with the failure), and it dies with the
//! thread that spawned it if the test binary itself is killed.

use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::Value;

use super::pki::{api_keys_file, test_pki};

/// The binary under test, built by cargo for the integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_svc");

/// How long a child may take to print its ready line (generous: CI machines are slow).
pub const READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a child may take to exit after SIGTERM, or to fail at start-up.
pub const EXIT_TIMEOUT: Duration = Duration::from_secs(15);

/// The `svc run` environment variables; removed from every child so the developer's
/// shell cannot change what a test runs.
const SVC_ENV: &[&str] = &[
    "SVC_ROLE",
    "SVC_CONFIG",
    "SVC_LISTEN",
    "SVC_DATA_DIR",
    "SVC_REGISTRY",
    "SVC_INSTANCE_ID",
    "SVC_LOG_FORMAT",
    "SVC_SHARD",
    "SVC_SHARDS",
    "SVC_LOG_FILE",
    "SVC_TLS_DIR",
    "SVC_API_KEYS_FILE",
    "SVC_ROLES_DIR",
    "RUST_LOG",
    // Set when the tests themselves run under systemd: no child may notify it.
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    FAULT_SAGA_STEP_DELAY,
];

/// The orders role's fault-injection variable: pause before every saga step. Cleared
/// like the variables above; pass it with `Command::env` (or [`Topology::env`]).
///
/// [`Topology::env`]: super::Topology::env
pub const FAULT_SAGA_STEP_DELAY: &str = "SVC_FAULT_SAGA_STEP_DELAY";

/// The platform server's fault-injection variable: with `1`, the instance answers 500 to
/// everything but its health, metrics and peers endpoints. Pass it with `Command::env`.
pub const FAULT_HTTP_500: &str = "SVC_FAULT_HTTP_500";

/// A fresh `svc` command with a clean environment and piped output.
pub fn svc_command() -> Command {
    let mut cmd = Command::new(BIN);
    for var in SVC_ENV {
        cmd.env_remove(var);
    }
    // Every test runs with production's mutual TLS and API keys.
    cmd.env("SVC_TLS_DIR", test_pki())
        .env("SVC_API_KEYS_FILE", api_keys_file());
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        // Safety net if the test binary itself is killed: the child gets SIGKILL when the
        // spawning thread dies (each test spawns from its own thread, and Drop kills
        // children before that thread ends anyway). Only an async-signal-safe syscall.
        unsafe {
            cmd.pre_exec(|| {
                nix::sys::prctl::set_pdeathsig(Signal::SIGKILL).map_err(std::io::Error::from)
            });
        }
    }
    cmd
}

/// A base URL nothing listens on: a port the kernel just handed out, released again.
pub fn dead_url() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let port = listener.local_addr().unwrap().port();
    drop(listener);
    format!("https://127.0.0.1:{port}")
}

/// A shared, growing text buffer filled by a reader thread.
#[derive(Clone, Default)]
struct Buffer(Arc<Mutex<String>>);

impl Buffer {
    fn drain_from(&self, mut pipe: impl Read + Send + 'static) -> JoinHandle<()> {
        let buf = self.clone();
        std::thread::spawn(move || {
            let mut chunk = [0u8; 8192];
            loop {
                match pipe.read(&mut chunk) {
                    Ok(0) | Err(_) => return,
                    Ok(n) => buf
                        .0
                        .lock()
                        .unwrap()
                        .push_str(&String::from_utf8_lossy(&chunk[..n])),
                }
            }
        })
    }

    fn text(&self) -> String {
        self.0.lock().unwrap().clone()
    }
}

/// What a process that ran to its end left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    pub fn code(&self) -> Option<i32> {
        self.status.code()
    }
}

/// Runs `cmd` to its end, killing it if it takes longer than `timeout`.
pub fn run_to_exit(mut cmd: Command, timeout: Duration) -> Finished {
    let mut child = cmd.spawn().expect("spawn svc");
    let out = Buffer::default();
    let err = Buffer::default();
    let t1 = out.drain_from(child.stdout.take().unwrap());
    let t2 = err.drain_from(child.stderr.take().unwrap());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            break status;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            let _ = t2.join();
            panic!(
                "{cmd:?} did not exit within {timeout:?}; stderr:\n{}",
                err.text()
            );
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    let _ = t1.join();
    let _ = t2.join();
    Finished {
        status,
        stdout: out.text(),
        stderr: err.text(),
    }
}

/// One running `svc` child. Dropping it SIGKILLs and reaps the process.
pub struct Svc {
    pub label: String,
    /// The `ready` line, as printed.
    pub ready: Value,
    /// Where clients reach it: `public_address` of the ready line if it has one (the
    /// gateway's public API), else `address`.
    pub url: String,
    /// `address` of the ready line (the internal mutual-TLS listener, as registered),
    /// e.g. `https://127.0.0.1:41234`.
    pub internal_url: String,
    child: Child,
    stderr: Buffer,
    stderr_thread: Option<JoinHandle<()>>,
    exited: Option<ExitStatus>,
}

impl Svc {
    /// Spawns `cmd` and waits for its ready line. On exit or timeout the error says so
    /// and includes everything the child wrote to stderr.
    pub fn spawn(mut cmd: Command, label: &str) -> Result<Svc, String> {
        let started = Instant::now();
        let mut child = cmd
            .spawn()
            .map_err(|e| format!("{label}: cannot spawn: {e}"))?;
        let stderr = Buffer::default();
        let stderr_thread = stderr.drain_from(child.stderr.take().unwrap());
        let (lines_tx, lines) = mpsc::channel::<String>();
        let stdout = child.stdout.take().unwrap();
        std::thread::spawn(move || {
            // Keep reading to EOF so the child never blocks on a full stdout pipe.
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                let _ = lines_tx.send(line);
            }
        });
        let mut svc = Svc {
            label: label.to_string(),
            ready: Value::Null,
            url: String::new(),
            internal_url: String::new(),
            child,
            stderr,
            stderr_thread: Some(stderr_thread),
            exited: None,
        };
        let mut other_stdout = Vec::new();
        loop {
            match lines.recv_timeout(Duration::from_millis(10)) {
                Ok(line) => match serde_json::from_str::<Value>(&line) {
                    Ok(v) if v["event"] == "ready" => {
                        svc.internal_url = v["address"]
                            .as_str()
                            .ok_or_else(|| format!("{label}: ready line without address: {line}"))?
                            .to_string();
                        svc.url = v["public_address"]
                            .as_str()
                            .unwrap_or(&svc.internal_url)
                            .to_string();
                        svc.ready = v;
                        return Ok(svc);
                    }
                    _ => other_stdout.push(line),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    // stdout closed: the child is exiting; wait for it to finish.
                    std::thread::sleep(Duration::from_millis(10));
                }
            }
            if let Some(status) = svc.child.try_wait().map_err(|e| e.to_string())? {
                svc.exited = Some(status);
                return Err(format!(
                    "{label} exited with {status} before it was ready\nstdout: {other_stdout:?}\nstderr:\n{}",
                    svc.collect_stderr()
                ));
            }
            if started.elapsed() > READY_TIMEOUT {
                let _ = svc.child.kill();
                svc.exited = svc.child.wait().ok();
                return Err(format!(
                    "{label} printed no ready line within {READY_TIMEOUT:?}\nstdout: {other_stdout:?}\nstderr:\n{}",
                    svc.collect_stderr()
                ));
            }
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// The port it serves on.
    pub fn port(&self) -> u16 {
        self.url
            .rsplit(':')
            .next()
            .and_then(|p| p.parse().ok())
            .unwrap_or_else(|| panic!("no port in {}", self.url))
    }

    pub fn instance_id(&self) -> String {
        self.ready["instance"]
            .as_str()
            .unwrap_or_default()
            .to_string()
    }

    /// Everything written to stderr so far.
    pub fn stderr(&self) -> String {
        self.stderr.text()
    }

    /// Stderr once the child has exited (waits for the drain thread to reach EOF).
    fn collect_stderr(&mut self) -> String {
        if let Some(t) = self.stderr_thread.take() {
            let _ = t.join();
        }
        self.stderr.text()
    }

    pub fn signal(&self, sig: Signal) {
        signal::kill(Pid::from_raw(self.pid()), sig)
            .unwrap_or_else(|e| panic!("{}: cannot send {sig}: {e}", self.label));
    }

    /// SIGSTOP, returning once every thread is stopped (see [`freeze_pid`]).
    pub fn freeze(&self) {
        freeze_pid(self.pid(), &self.label);
    }

    /// SIGCONT: a frozen instance runs on.
    pub fn thaw(&self) {
        self.signal(Signal::SIGCONT);
    }

    /// Waits up to `timeout` for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited {
                return Some(status);
            }
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                self.exited = Some(status);
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// SIGKILL, then reap.
    pub fn kill(&mut self) -> ExitStatus {
        if self.exited.is_none() {
            self.signal(Signal::SIGKILL);
        }
        self.wait_exit(EXIT_TIMEOUT)
            .unwrap_or_else(|| panic!("{} survived SIGKILL", self.label))
    }

    /// SIGTERM, then wait for the exit; panics (with stderr) if it does not exit in time.
    pub fn terminate(&mut self) -> ExitStatus {
        self.signal(Signal::SIGTERM);
        match self.wait_exit(EXIT_TIMEOUT) {
            Some(status) => status,
            None => panic!(
                "{} did not exit within {EXIT_TIMEOUT:?} of SIGTERM; stderr:\n{}",
                self.label,
                self.stderr()
            ),
        }
    }

    /// Waits until stderr contains `needle`; panics with the stderr otherwise.
    pub fn wait_for_log(&self, needle: &str, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !self.stderr().contains(needle) {
            if Instant::now() > deadline {
                panic!(
                    "{}: `{needle}` not logged within {timeout:?}; stderr:\n{}",
                    self.label,
                    self.stderr()
                );
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }
}

impl Drop for Svc {
    fn drop(&mut self) {
        if self.exited.is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if std::thread::panicking() {
            // Shown with the failing test's output: what this child said.
            eprintln!(
                "----- stderr of {} -----\n{}",
                self.label,
                tail(&self.stderr(), 60)
            );
        }
    }
}

/// SIGSTOP to `pid`, returning once every thread of it is stopped: the signal is
/// delivered asynchronously, and a thread running on another core may otherwise still
/// answer a request sent right after.
pub fn freeze_pid(pid: i32, label: &str) {
    signal::kill(Pid::from_raw(pid), Signal::SIGSTOP)
        .unwrap_or_else(|e| panic!("{label}: cannot send SIGSTOP: {e}"));
    let tasks = format!("/proc/{pid}/task");
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let all_stopped = std::fs::read_dir(&tasks)
            .map(|entries| {
                entries.flatten().all(|t| {
                    std::fs::read_to_string(t.path().join("stat"))
                        .ok()
                        .and_then(|stat| {
                            // The state follows the command name's closing parenthesis.
                            let rest = &stat[stat.rfind(')')? + 2..];
                            rest.chars().next()
                        })
                        .is_some_and(|state| state == 'T' || state == 't')
                })
            })
            .unwrap_or(false);
        if all_stopped {
            return;
        }
        assert!(Instant::now() < deadline, "{label}: not stopped by SIGSTOP");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}
