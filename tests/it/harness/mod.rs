//! Test harness: runs real `svc` processes and talks to them over HTTP.
//!
//! * [`Cluster`] owns one temporary directory (data dirs, config files) per test and
//!   builds `svc run` commands that bind `127.0.0.1:0`, so tests run in parallel.
//! * [`Svc`] is one running child: it waits for the `{"event":"ready"}` line on stdout,
//!   drains stderr into a buffer (so the pipe never fills and failures can show it), and
//!   SIGKILLs the child when dropped, also when the test panics.
//! * [`wait_for`] polls a condition until a deadline, failing with the last reason.
//! * HTTP helpers use an async reqwest client without connection reuse: every request
//!   opens a fresh connection, so a killed-and-restarted server is never reached through
//!   a stale pooled connection, and no idle connection of ours delays a graceful drain.

#![allow(dead_code)] // each test file uses a different part of the harness

mod chaos;
mod full;
mod pki;
mod sharded;
pub mod tools;

// Each test file uses a different part of the harness.
#[allow(unused_imports)]
pub use chaos::*;
#[allow(unused_imports)]
pub use full::*;
#[allow(unused_imports)]
pub use pki::*;
#[allow(unused_imports)]
pub use sharded::*;

use std::future::Future;
use std::io::{BufRead, BufReader, Read};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;
use serde_json::Value;

/// The binary under test, built by cargo for the integration tests.
pub const BIN: &str = env!("CARGO_BIN_EXE_svc");

/// Lease timing the test registries grant (see [`Cluster::registry_config`]).
pub const LEASE_TTL: Duration = Duration::from_secs(1);
pub const RENEW_INTERVAL: Duration = Duration::from_millis(250);

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
    "RUST_LOG",
    // Set when the tests themselves run under systemd: no child may notify it.
    "NOTIFY_SOCKET",
    "WATCHDOG_USEC",
    "WATCHDOG_PID",
    FAULT_SAGA_STEP_DELAY,
];

/// The orders role's fault-injection variable: pause before every saga step. Cleared
/// like the variables above; pass it with `Command::env` (or [`FullOptions::orders_env`]).
pub const FAULT_SAGA_STEP_DELAY: &str = "SVC_FAULT_SAGA_STEP_DELAY";

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

    /// SIGSTOP, returning once every thread is stopped: the signal is delivered
    /// asynchronously, and a thread running on another core may otherwise still answer
    /// a request sent right after.
    pub fn freeze(&self) {
        self.signal(Signal::SIGSTOP);
        let tasks = format!("/proc/{}/task", self.pid());
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
            assert!(
                Instant::now() < deadline,
                "{}: not stopped by SIGSTOP",
                self.label
            );
            std::thread::sleep(Duration::from_millis(2));
        }
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

fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// One test's world: a temporary directory and the commands that run `svc` in it.
pub struct Cluster {
    pub dir: tempfile::TempDir,
}

impl Default for Cluster {
    fn default() -> Self {
        Self::new()
    }
}

impl Cluster {
    pub fn new() -> Cluster {
        Cluster {
            dir: tempfile::Builder::new()
                .prefix("svc-it-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    /// The `--data-dir` every instance of this cluster uses.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes `text` to `name` in the cluster directory and returns the path.
    pub fn write_file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        std::fs::write(&path, text).expect("write file");
        path
    }

    /// A config file with short leases, so eviction tests take about a second.
    pub fn registry_config(&self) -> PathBuf {
        self.write_file(
            "registry.yaml",
            &format!(
                "registry:\n  lease_ttl: {}ms\n  renew_interval: {}ms\n",
                LEASE_TTL.as_millis(),
                RENEW_INTERVAL.as_millis()
            ),
        )
    }

    /// `svc run --role R --listen 127.0.0.1:0 --data-dir D --instance-id ID --registry URL`.
    pub fn run_command(&self, role: &str, id: &str, registry: &str) -> Command {
        let mut cmd = svc_command();
        cmd.arg("run")
            .args(["--role", role])
            .args(["--listen", "127.0.0.1:0"])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--instance-id", id])
            .args(["--registry", registry]);
        cmd
    }

    /// Where `svc run --role R --instance-id ID` keeps its redb file.
    pub fn store_path(&self, role: &str, id: &str) -> PathBuf {
        self.data_dir().join(format!("{role}-{id}.redb"))
    }

    /// Starts a registry with the fast-lease config on a free port.
    pub fn start_registry(&self) -> Svc {
        self.start_registry_on(0)
    }

    /// Starts the registry `reg-0` on `port` (0: any), e.g. to restart it where it was.
    pub fn start_registry_on(&self, port: u16) -> Svc {
        let mut cmd = svc_command();
        cmd.arg("run")
            .args(["--role", "registry"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--instance-id", "reg-0"])
            .arg("--config")
            .arg(self.registry_config());
        Svc::spawn(cmd, "registry/reg-0").unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts instance `id` of `role`, registering at `registry`.
    pub fn start(&self, role: &str, id: &str, registry: &str) -> Svc {
        self.start_cmd(self.run_command(role, id, registry), role, id)
    }

    /// Starts a prepared command (e.g. [`Cluster::run_command`] with extra flags).
    pub fn start_cmd(&self, cmd: Command, role: &str, id: &str) -> Svc {
        Svc::spawn(cmd, &format!("{role}/{id}")).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// Polls `check` every 25 ms until it returns `Ok`, for at most `timeout`; panics with
/// `what` and the last `Err` otherwise. Returns the value and the time it took.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match check().await {
            Ok(v) => return (v, started.elapsed()),
            Err(reason) => reason,
        };
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// An HTTP client without connection reuse (see the module docs), presenting the
/// operator's certificate and the test API key.
pub fn http() -> reqwest::Client {
    client_as("operator")
}

/// GET `url` and parse JSON; `Err` on transport errors or non-2xx.
pub async fn try_get_json(url: &str) -> Result<Value, String> {
    let res = http()
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = res.status();
    let text = res.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {url}: {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("GET {url}: not JSON ({e}): {text}"))
}

pub async fn get_json(url: &str) -> Value {
    try_get_json(url).await.unwrap_or_else(|e| panic!("{e}"))
}

/// POST `body` as JSON; returns the response whatever its status.
pub async fn post_json(url: &str, body: &Value) -> reqwest::Response {
    post_json_as("operator", url, body).await
}

/// [`post_json`] presenting `identity`'s certificate: internal writes accept only the
/// roles their manifest names (e.g. orders for a reservation, gateway for a product).
pub async fn post_json_as(identity: &str, url: &str, body: &Value) -> reqwest::Response {
    client_as(identity)
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// The registry's catalog (`GET /v1/catalog`).
pub async fn catalog(registry: &Svc) -> Value {
    get_json(&format!("{}/v1/catalog", registry.url)).await
}

/// `(role, instance_id, address)` of every instance in a catalog-shaped document
/// (`/v1/catalog` of the registry or `/v1/peers` of an instance).
pub fn members(catalog: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if let Some(roles) = catalog["roles"].as_object() {
        for (role, instances) in roles {
            for i in instances.as_array().into_iter().flatten() {
                out.push((
                    role.clone(),
                    i["instance_id"].as_str().unwrap_or_default().to_string(),
                    i["address"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Whether `catalog` lists `svc` (its role, instance id and address).
pub fn lists(catalog: &Value, svc: &Svc) -> bool {
    let role = svc.ready["role"].as_str().unwrap_or_default();
    members(catalog)
        .iter()
        .any(|(r, id, addr)| r == role && *id == svc.instance_id() && *addr == svc.internal_url)
}

/// A product body for inventory's `POST /v1/products`.
pub fn product(sku: &str) -> Value {
    serde_json::json!({ "sku": sku, "name": "Green tea", "price_minor": 450, "stock": 7 })
}

/// Waits until the registry's catalog lists every one of `instances`.
pub async fn wait_registered(registry: &Svc, instances: &[&Svc]) -> Value {
    let url = format!("{}/v1/catalog", registry.url);
    wait_for(
        "instances in the catalog",
        Duration::from_secs(10),
        || async {
            let c = try_get_json(&url).await?;
            match instances.iter().find(|s| !lists(&c, s)) {
                None => Ok(c),
                Some(s) => Err(format!("{} missing from {c}", s.label)),
            }
        },
    )
    .await
    .0
}

/// Waits until `svc`'s `/v1/peers` lists every one of `peers`.
pub async fn wait_peers(svc: &Svc, peers: &[&Svc]) -> Value {
    let url = format!("{}/v1/peers", svc.internal_url);
    wait_for(
        &format!("peers in the view of {}", svc.label),
        Duration::from_secs(10),
        || async {
            let v = try_get_json(&url).await?;
            match peers.iter().find(|p| !lists(&v, p)) {
                None => Ok(v),
                Some(p) => Err(format!("{} missing from {v}", p.label)),
            }
        },
    )
    .await
    .0
}

/// Path helper for messages.
pub fn show(path: &Path) -> String {
    path.display().to_string()
}

/// Creates a product through the public API at `api` (`.../api/v1`); panics unless 201.
pub async fn create_product_at(
    client: &reqwest::Client,
    api: &str,
    sku: &str,
    price_minor: u64,
    stock: u64,
) {
    let body = serde_json::json!({
        "sku": sku, "name": format!("Product {sku}"),
        "price_minor": price_minor, "stock": stock,
    });
    let res = client
        .post(format!("{api}/products"))
        .json(&body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("create product {sku}: {e}"));
    let status = res.status();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(status, 201, "create product {sku}: {text}");
}

/// Units sold per SKU by the confirmed ones of `orders`.
pub fn sold_by_orders(orders: &[Value]) -> std::collections::HashMap<String, u64> {
    let mut sold = std::collections::HashMap::new();
    for o in orders.iter().filter(|o| o["status"] == "confirmed") {
        for line in o["lines"].as_array().into_iter().flatten() {
            *sold.entry(str_of(line, "sku").to_string()).or_default() += u64_of(line, "quantity");
        }
    }
    sold
}

/// Once every saga ended: each unit of `sku` in exactly one bucket, none reserved, and
/// the sold ones exactly what the confirmed orders bought.
pub fn assert_stock_settled(
    sku: &str,
    stock: u64,
    (available, reserved, sold): (u64, u64, u64),
    sold_by_orders: &std::collections::HashMap<String, u64>,
) {
    assert_eq!(
        available + reserved + sold,
        stock,
        "{sku}: available {available} + reserved {reserved} + sold {sold} != {stock}"
    );
    assert_eq!(reserved, 0, "{sku}: units still reserved");
    assert_eq!(
        sold,
        sold_by_orders.get(sku).copied().unwrap_or(0),
        "{sku}: sold units differ from the confirmed orders' lines"
    );
}

/// A response header as text, if present and printable.
pub fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}
