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

pub mod tools;

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
    format!("http://127.0.0.1:{port}")
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
    /// `address` of the ready line, e.g. `http://127.0.0.1:41234`.
    pub url: String,
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
                        svc.url = v["address"]
                            .as_str()
                            .ok_or_else(|| format!("{label}: ready line without address: {line}"))?
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

/// An HTTP client without connection reuse (see the module docs).
pub fn http() -> reqwest::Client {
    reqwest::Client::builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
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
    http()
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
        .any(|(r, id, addr)| r == role && *id == svc.instance_id() && *addr == svc.url)
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
    let url = format!("{}/v1/peers", svc.url);
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

// ---------------------------------------------------------------------------------------
// A full order-processing cluster: registry, inventory, payments, orders, notifications
// and a gateway, all on 127.0.0.1:0, plus helpers for the public API.

/// The test card payments always declines.
pub const DECLINED_CARD: &str = "4000000000000002";

/// The instance id every [`FullCluster`] gives `role` (so a restart reuses its data).
pub fn full_instance_id(role: &str) -> &'static str {
    match role {
        "inventory" => "inv-1",
        "payments" => "pay-1",
        "orders" => "ord-1",
        "notifications" => "ntf-1",
        "gateway" => "gw-1",
        other => panic!("no instance id for role `{other}`"),
    }
}

/// How [`FullCluster::start_with`] runs the roles.
#[derive(Clone, Debug)]
pub struct FullOptions {
    /// `orders.create_wait`: how long a create waits for its saga before answering 202.
    pub create_wait: Duration,
    /// `orders.step_retry_max`: short, so sagas resume quickly after a peer comes back.
    pub step_retry_max: Duration,
    /// Extra environment of the first orders process (e.g. [`FAULT_SAGA_STEP_DELAY`]).
    pub orders_env: Vec<(String, String)>,
    /// `--log-format json` and `RUST_LOG=info,svc=debug` on every role but the registry.
    pub debug_json_logs: bool,
    /// More YAML for the shared config file (top-level sections other than `orders`),
    /// e.g. `"http:\n  call_timeout: 500ms\n"`.
    pub extra_config: String,
}

impl Default for FullOptions {
    fn default() -> Self {
        FullOptions {
            // Generous: a confirmed order answers 201 even on a loaded CI machine.
            create_wait: Duration::from_secs(5),
            step_retry_max: Duration::from_millis(500),
            orders_env: Vec::new(),
            debug_json_logs: false,
            extra_config: String::new(),
        }
    }
}

/// Every role of the backend, started and connected. Fields drop (SIGKILL) in
/// declaration order: the gateway first, the temporary directory last.
pub struct FullCluster {
    pub gateway: Svc,
    pub orders: Svc,
    pub notifications: Svc,
    pub payments: Svc,
    pub inventory: Svc,
    pub registry: Svc,
    /// The public API base, e.g. `http://127.0.0.1:41234/api/v1`.
    pub api: String,
    pub options: FullOptions,
    /// One client for the test (no connection reuse, see [`http`]).
    pub client: reqwest::Client,
    config: PathBuf,
    pub cluster: Cluster,
}

/// What a create-order call answered.
#[derive(Debug)]
pub struct Placed {
    pub status: u16,
    pub location: Option<String>,
    pub body: Value,
}

impl Placed {
    pub fn id(&self) -> String {
        self.body["id"]
            .as_str()
            .unwrap_or_else(|| panic!("no order id in {self:?}"))
            .to_string()
    }
}

/// A create-order body: `lines` of `(sku, quantity)`, optionally a card.
pub fn order_body(lines: &[(&str, i64)], card: Option<&str>) -> Value {
    let lines: Vec<Value> = lines
        .iter()
        .map(|(sku, quantity)| serde_json::json!({ "sku": sku, "quantity": quantity }))
        .collect();
    match card {
        Some(card) => serde_json::json!({ "lines": lines, "card": card }),
        None => serde_json::json!({ "lines": lines }),
    }
}

/// Checks that `res` is an `application/problem+json` answer with `status` and a detail.
pub async fn assert_problem(res: reqwest::Response, status: u16, what: &str) -> Value {
    let got = res.status().as_u16();
    let content_type = res
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_string();
    let text = res.text().await.unwrap_or_default();
    assert_eq!(got, status, "{what}: {text}");
    assert!(
        content_type.starts_with("application/problem+json"),
        "{what}: content-type {content_type:?}: {text}"
    );
    let problem: Value = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{what}: problem body is not JSON ({e}): {text}"));
    assert_eq!(problem["status"], status, "{what}: {problem}");
    assert!(
        problem["detail"].as_str().is_some_and(|d| !d.is_empty()),
        "{what}: {problem}"
    );
    problem
}

/// `value[key]` as a u64, panicking with the document otherwise.
pub fn u64_of(value: &Value, key: &str) -> u64 {
    value[key]
        .as_u64()
        .unwrap_or_else(|| panic!("`{key}` is not a u64 in {value}"))
}

fn str_of<'a>(value: &'a Value, key: &str) -> &'a str {
    value[key].as_str().unwrap_or_default()
}

impl FullCluster {
    /// All roles with the default options.
    pub async fn start() -> FullCluster {
        Self::start_with(FullOptions::default()).await
    }

    pub async fn start_with(options: FullOptions) -> FullCluster {
        let cluster = Cluster::new();
        let config = cluster.write_file(
            "full.yaml",
            &format!(
                "orders:\n  create_wait: {}ms\n  step_retry_max: {}ms\n{}",
                options.create_wait.as_millis(),
                options.step_retry_max.as_millis(),
                options.extra_config
            ),
        );
        let registry = cluster.start_registry();
        let spawn = |role: &str, env: &[(String, String)]| {
            let cmd = full_command(&cluster, &config, &options, &registry.url, role, env);
            cluster.start_cmd(cmd, role, full_instance_id(role))
        };
        let inventory = spawn("inventory", &[]);
        let payments = spawn("payments", &[]);
        let notifications = spawn("notifications", &[]);
        let orders = spawn("orders", &options.orders_env);
        let gateway = spawn("gateway", &[]);
        let full = FullCluster {
            api: format!("{}/api/v1", gateway.url),
            gateway,
            orders,
            notifications,
            payments,
            inventory,
            registry,
            options,
            client: http(),
            config,
            cluster,
        };
        full.wait_connected().await;
        full
    }

    /// The `svc run` command of `role` in this cluster (same id, data dir and config).
    pub fn command(&self, role: &str, env: &[(String, String)]) -> Command {
        full_command(
            &self.cluster,
            &self.config,
            &self.options,
            &self.registry.url,
            role,
            env,
        )
    }

    /// Starts `role` again (after the test killed it), with `env` added.
    pub fn spawn_role(&self, role: &str, env: &[(String, String)]) -> Svc {
        self.cluster
            .start_cmd(self.command(role, env), role, full_instance_id(role))
    }

    /// Waits until the gateway and orders know every role they call, at the addresses
    /// the running instances serve on.
    pub async fn wait_connected(&self) {
        wait_peers(
            &self.gateway,
            &[
                &self.inventory,
                &self.orders,
                &self.payments,
                &self.notifications,
            ],
        )
        .await;
        wait_peers(
            &self.orders,
            &[&self.inventory, &self.payments, &self.notifications],
        )
        .await;
    }

    pub async fn create_product(&self, sku: &str, price_minor: u64, stock: u64) {
        let body = serde_json::json!({
            "sku": sku, "name": format!("Product {sku}"),
            "price_minor": price_minor, "stock": stock,
        });
        let res = self
            .client
            .post(format!("{}/products", self.api))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create product {sku}: {e}"));
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert_eq!(status, 201, "create product {sku}: {text}");
    }

    async fn get(&self, url: &str) -> Result<(u16, Value), String> {
        let res = self
            .client
            .get(url)
            .send()
            .await
            .map_err(|e| format!("GET {url}: {e}"))?;
        let status = res.status().as_u16();
        let text = res.text().await.map_err(|e| format!("GET {url}: {e}"))?;
        let body = serde_json::from_str(&text)
            .map_err(|e| format!("GET {url}: {status}: not JSON ({e}): {text}"))?;
        Ok((status, body))
    }

    /// GET `url`, expecting 200 JSON.
    pub async fn get_ok(&self, url: &str) -> Value {
        match self.get(url).await {
            Ok((200, body)) => body,
            Ok((status, body)) => panic!("GET {url}: {status}: {body}"),
            Err(e) => panic!("{e}"),
        }
    }

    /// A product as the public API shows it.
    pub async fn product(&self, sku: &str) -> Value {
        self.get_ok(&format!("{}/products/{sku}", self.api)).await
    }

    /// `(available, reserved, sold)` of a product.
    pub async fn stock(&self, sku: &str) -> (u64, u64, u64) {
        let p = self.product(sku).await;
        (
            u64_of(&p, "available"),
            u64_of(&p, "reserved"),
            u64_of(&p, "sold"),
        )
    }

    /// `POST /api/v1/orders` with an optional `Idempotency-Key`.
    pub async fn place_order(&self, body: &Value, key: Option<&str>) -> Placed {
        let mut req = self.client.post(format!("{}/orders", self.api)).json(body);
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST orders {body}: {e}"));
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("POST orders: {status}: not JSON ({e}): {text}"));
        Placed {
            status,
            location,
            body,
        }
    }

    /// Places an order and waits for its saga to end; returns the final order.
    pub async fn place_final(&self, body: &Value) -> Value {
        let placed = self.place_order(body, None).await;
        match placed.status {
            201 => placed.body,
            202 => self.wait_final(&placed.id(), Duration::from_secs(20)).await,
            _ => panic!("order {body} answered {placed:?}"),
        }
    }

    pub async fn order(&self, id: &str) -> Value {
        self.get_ok(&format!("{}/orders/{id}", self.api)).await
    }

    /// Waits until order `id` is confirmed or cancelled.
    pub async fn wait_final(&self, id: &str, timeout: Duration) -> Value {
        let url = format!("{}/orders/{id}", self.api);
        wait_for(&format!("order {id} to end"), timeout, || async {
            match self.get(&url).await? {
                (200, o) if o["status"] != "pending" => Ok(o),
                (status, o) => Err(format!("{status}: {o}")),
            }
        })
        .await
        .0
    }

    /// Every order, walking the pages of `GET /api/v1/orders` (`page` at a time).
    pub async fn try_all_orders(&self, page: usize) -> Result<Vec<Value>, String> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let url = match &after {
                Some(a) => format!("{}/orders?limit={page}&after={a}", self.api),
                None => format!("{}/orders?limit={page}", self.api),
            };
            let body = match self.get(&url).await? {
                (200, body) => body,
                (status, body) => return Err(format!("GET {url}: {status}: {body}")),
            };
            let orders = body["orders"]
                .as_array()
                .ok_or_else(|| format!("no orders array: {body}"))?;
            all.extend(orders.iter().cloned());
            match body["next_after"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => return Ok(all),
            }
        }
    }

    pub async fn all_orders(&self) -> Vec<Value> {
        self.try_all_orders(100)
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// Waits until no order is pending; returns every order.
    pub async fn wait_all_final(&self, timeout: Duration) -> Vec<Value> {
        wait_for("every order to end", timeout, || async {
            let all = self.try_all_orders(1000).await?;
            let pending: Vec<&str> = all
                .iter()
                .filter(|o| o["status"] == "pending")
                .map(|o| str_of(o, "id"))
                .collect();
            if pending.is_empty() {
                Ok(all)
            } else {
                Err(format!("{} pending: {pending:?}", pending.len()))
            }
        })
        .await
        .0
    }

    /// `(status, body)` of `GET /api/v1/orders/{id}/payment`.
    pub async fn payment(&self, id: &str) -> (u16, Value) {
        self.get(&format!("{}/orders/{id}/payment", self.api))
            .await
            .unwrap_or_else(|e| panic!("{e}"))
    }

    /// The notifications of one order, through the gateway.
    pub async fn order_notifications(&self, id: &str) -> Vec<Value> {
        let body = self
            .get_ok(&format!("{}/orders/{id}/notifications", self.api))
            .await;
        body["notifications"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// Every notification, from the notifications instance itself.
    pub async fn try_all_notifications(&self) -> Result<Vec<Value>, String> {
        let url = format!("{}/v1/notifications", self.notifications.url);
        match self.get(&url).await? {
            (200, body) => body["notifications"]
                .as_array()
                .cloned()
                .ok_or_else(|| format!("no notifications array: {body}")),
            (status, body) => Err(format!("GET {url}: {status}: {body}")),
        }
    }

    /// Waits until there are at least `n` notifications in all; returns them.
    pub async fn wait_notifications(&self, n: usize, timeout: Duration) -> Vec<Value> {
        wait_for(&format!("{n} notifications"), timeout, || async {
            let all = self.try_all_notifications().await?;
            if all.len() >= n {
                Ok(all)
            } else {
                Err(format!("{} so far", all.len()))
            }
        })
        .await
        .0
    }

    /// Payments' ledger (`GET /v1/ledger` on the payments instance).
    pub async fn ledger(&self) -> Value {
        self.get_ok(&format!("{}/v1/ledger", self.payments.url))
            .await
    }

    /// Inventory's reservations still holding stock.
    pub async fn held_reservations(&self) -> Vec<Value> {
        let body = self
            .get_ok(&format!(
                "{}/v1/reservations?status=held",
                self.inventory.url
            ))
            .await;
        body["reservations"]
            .as_array()
            .cloned()
            .unwrap_or_else(|| panic!("no reservations array: {body}"))
    }

    /// Checks everything that must hold once every saga has ended and every event was
    /// delivered: `orders` (all final) against inventory, payments and notifications.
    /// `initial` is each product's stock before the first order.
    pub async fn assert_settled(&self, initial: &[(&str, u64)], orders: &[Value]) {
        // Inventory: nothing held, every unit in exactly one bucket.
        let held = self.held_reservations().await;
        assert!(held.is_empty(), "reservations still held: {held:?}");
        let mut sold_by_orders: std::collections::HashMap<&str, u64> = Default::default();
        for o in orders.iter().filter(|o| o["status"] == "confirmed") {
            for line in o["lines"].as_array().into_iter().flatten() {
                *sold_by_orders.entry(str_of(line, "sku")).or_default() += u64_of(line, "quantity");
            }
        }
        for (sku, stock) in initial {
            let (available, reserved, sold) = self.stock(sku).await;
            assert_eq!(
                available + reserved + sold,
                *stock,
                "{sku}: available {available} + reserved {reserved} + sold {sold} != {stock}"
            );
            assert_eq!(reserved, 0, "{sku}: units still reserved");
            assert_eq!(
                sold,
                sold_by_orders.get(sku).copied().unwrap_or(0),
                "{sku}: sold units differ from the confirmed orders' lines"
            );
        }

        // Payments: one capture per confirmed order, for its total; none for the others.
        let ledger = self.ledger().await;
        let entries = ledger["entries"].as_array().cloned().unwrap_or_default();
        let count = |id: &str, kind: &str| {
            entries
                .iter()
                .filter(|e| e["order_id"] == id && e["kind"] == kind)
                .count()
        };
        let mut confirmed_total = 0;
        for o in orders {
            let id = str_of(o, "id");
            assert!(
                count(id, "authorize") <= 1,
                "{id}: authorized twice: {ledger}"
            );
            match str_of(o, "status") {
                "confirmed" => {
                    let total = u64_of(o, "total_minor");
                    confirmed_total += total;
                    assert_eq!(count(id, "capture"), 1, "{id}: captures: {ledger}");
                    let capture = entries
                        .iter()
                        .find(|e| e["order_id"] == id && e["kind"] == "capture")
                        .unwrap();
                    assert_eq!(u64_of(capture, "amount_minor"), total, "{id}: {o}");
                }
                "cancelled" => {
                    assert_eq!(count(id, "capture"), 0, "{id}: cancelled but captured");
                    assert!(o["reason"].is_string(), "cancelled without reason: {o}");
                }
                other => panic!("order {id} is {other}: {o}"),
            }
        }
        assert_eq!(
            u64_of(&ledger, "captured_total_minor"),
            confirmed_total,
            "captured total vs confirmed orders: {ledger}"
        );
        assert_eq!(
            u64_of(&ledger, "authorized_open_minor"),
            0,
            "authorizations left open: {ledger}"
        );

        // Notifications: exactly one per order, of the kind its final status says.
        let all = self
            .wait_notifications(orders.len(), Duration::from_secs(20))
            .await;
        assert_eq!(all.len(), orders.len(), "notifications: {all:?}");
        for o in orders {
            let id = str_of(o, "id");
            let kind = format!("order.{}", str_of(o, "status"));
            let mine: Vec<&Value> = all.iter().filter(|n| n["order_id"] == id).collect();
            assert_eq!(mine.len(), 1, "{id}: notifications {mine:?}");
            assert_eq!(mine[0]["kind"], kind.as_str(), "{id}: {o}");
        }
    }
}

fn full_command(
    cluster: &Cluster,
    config: &Path,
    options: &FullOptions,
    registry: &str,
    role: &str,
    env: &[(String, String)],
) -> Command {
    let mut cmd = cluster.run_command(role, full_instance_id(role), registry);
    cmd.arg("--config").arg(config);
    if options.debug_json_logs {
        cmd.args(["--log-format", "json"])
            .env("RUST_LOG", "info,svc=debug");
    }
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd
}

// ---------------------------------------------------------------------------------------
// A sharded cluster: several shards of the stateful roles and one or more gateways, with
// the instance of shard `n` of role `r` named `r-n`.

/// FNV-1a 64, as the routing rules in docs/ARCHITECTURE.md define it: tests compute where
/// a key lives independently of the code under test.
pub fn fnv1a64(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The shard among `count` that owns `key`.
pub fn shard_for_key(key: &str, count: u32) -> u32 {
    (fnv1a64(key) % u64::from(count)) as u32
}

/// `n` keys `{prefix}-0`, `{prefix}-1`, ... that live on `shard` of `count`.
pub fn keys_on_shard(prefix: &str, shard: u32, count: u32, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|k| shard_for_key(k, count) == shard)
        .take(n)
        .collect()
}

/// The shard an order id (`ord-<shard>-<ulid>`) names.
pub fn shard_of_order(id: &str) -> u32 {
    id.split('-')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no shard in order id `{id}`"))
}

/// How many instances [`ShardedCluster::start`] runs.
#[derive(Clone, Debug)]
pub struct ShardedOptions {
    pub orders: u32,
    pub inventory: u32,
    pub payments: u32,
    pub notifications: u32,
    pub gateways: usize,
}

impl Default for ShardedOptions {
    fn default() -> Self {
        ShardedOptions {
            orders: 2,
            inventory: 2,
            payments: 2,
            notifications: 1,
            gateways: 2,
        }
    }
}

impl ShardedOptions {
    /// The `--shards` every instance gets.
    pub fn shards_flag(&self) -> String {
        format!(
            "orders={},inventory={},payments={},notifications={}",
            self.orders, self.inventory, self.payments, self.notifications
        )
    }

    pub fn count(&self, role: &str) -> u32 {
        match role {
            "orders" => self.orders,
            "inventory" => self.inventory,
            "payments" => self.payments,
            "notifications" => self.notifications,
            other => panic!("`{other}` is not sharded"),
        }
    }
}

/// Every role, each stateful one in several shards. Fields drop (SIGKILL) in declaration
/// order: the gateways first, the registry and the temporary directory last.
pub struct ShardedCluster {
    pub gateways: Vec<Svc>,
    pub orders: Vec<Svc>,
    pub inventory: Vec<Svc>,
    pub payments: Vec<Svc>,
    pub notifications: Vec<Svc>,
    pub registry: Svc,
    pub options: ShardedOptions,
    pub client: reqwest::Client,
    config: PathBuf,
    pub cluster: Cluster,
}

impl ShardedCluster {
    pub async fn start(options: ShardedOptions) -> ShardedCluster {
        let cluster = Cluster::new();
        let config = cluster.write_file(
            "sharded.yaml",
            "orders:\n  create_wait: 5s\n  step_retry_max: 500ms\n",
        );
        let registry = cluster.start_registry();
        let mut full = ShardedCluster {
            gateways: Vec::new(),
            orders: Vec::new(),
            inventory: Vec::new(),
            payments: Vec::new(),
            notifications: Vec::new(),
            registry,
            options,
            client: http(),
            config,
            cluster,
        };
        for role in ["inventory", "payments", "notifications", "orders"] {
            for shard in 0..full.options.count(role) {
                let svc = full.spawn_shard(role, shard);
                full.shards_mut(role).push(svc);
            }
        }
        for n in 0..full.options.gateways {
            let id = format!("gw-{n}");
            let mut cmd = full.command("gateway", &id);
            cmd.args(["--shards", &full.options.shards_flag()]);
            full.gateways
                .push(full.cluster.start_cmd(cmd, "gateway", &id));
        }
        full.wait_connected().await;
        full
    }

    fn command(&self, role: &str, id: &str) -> Command {
        let mut cmd = self.cluster.run_command(role, id, &self.registry.url);
        cmd.arg("--config").arg(&self.config);
        cmd
    }

    /// The `svc run` command of shard `shard` of `role` (same id and data on a restart).
    pub fn shard_command(&self, role: &str, shard: u32) -> Command {
        let mut cmd = self.command(role, &format!("{role}-{shard}"));
        cmd.args(["--shards", &self.options.shards_flag()])
            .args(["--shard", &shard.to_string()]);
        cmd
    }

    /// Starts shard `shard` of `role` (again, after the test killed it).
    pub fn spawn_shard(&self, role: &str, shard: u32) -> Svc {
        let id = format!("{role}-{shard}");
        self.cluster
            .start_cmd(self.shard_command(role, shard), role, &id)
    }

    pub fn shards(&self, role: &str) -> &[Svc] {
        match role {
            "orders" => &self.orders,
            "inventory" => &self.inventory,
            "payments" => &self.payments,
            "notifications" => &self.notifications,
            other => panic!("`{other}` is not sharded"),
        }
    }

    fn shards_mut(&mut self, role: &str) -> &mut Vec<Svc> {
        match role {
            "orders" => &mut self.orders,
            "inventory" => &mut self.inventory,
            "payments" => &mut self.payments,
            "notifications" => &mut self.notifications,
            other => panic!("`{other}` is not sharded"),
        }
    }

    /// The public API base of gateway `n` (wrapping around the gateways).
    pub fn api(&self, n: usize) -> String {
        format!("{}/api/v1", self.gateways[n % self.gateways.len()].url)
    }

    /// Waits until every gateway knows every shard, and every orders shard knows every
    /// shard it calls or sends events to.
    pub async fn wait_connected(&self) {
        let callees: Vec<&Svc> = self
            .inventory
            .iter()
            .chain(&self.payments)
            .chain(&self.notifications)
            .collect();
        let mut everyone = callees.clone();
        everyone.extend(&self.orders);
        for gateway in &self.gateways {
            wait_peers(gateway, &everyone).await;
        }
        for orders in &self.orders {
            wait_peers(orders, &callees).await;
        }
    }

    /// Waits until `svc`'s view of its peers no longer lists any of `gone`.
    pub async fn wait_forgotten(&self, svc: &Svc, gone: &[&Svc]) {
        let url = format!("{}/v1/peers", svc.url);
        wait_for(
            &format!("{} to forget dead peers", svc.label),
            Duration::from_secs(10),
            || async {
                let v = try_get_json(&url).await?;
                match gone.iter().find(|g| lists(&v, g)) {
                    None => Ok(()),
                    Some(g) => Err(format!("{} still in {v}", g.label)),
                }
            },
        )
        .await;
    }

    pub async fn create_product(&self, sku: &str, price_minor: u64, stock: u64) {
        let body = serde_json::json!({
            "sku": sku, "name": format!("Product {sku}"),
            "price_minor": price_minor, "stock": stock,
        });
        let res = self
            .client
            .post(format!("{}/products", self.api(0)))
            .json(&body)
            .send()
            .await
            .unwrap_or_else(|e| panic!("create product {sku}: {e}"));
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert_eq!(status, 201, "create product {sku}: {text}");
    }

    /// `GET url`: status, `Retry-After` and the JSON body.
    pub async fn get(&self, url: &str) -> (u16, Option<String>, Value) {
        let res = self
            .client
            .get(url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"));
        let status = res.status().as_u16();
        let retry_after = res
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("GET {url}: {status}: not JSON ({e}): {text}"));
        (status, retry_after, body)
    }

    /// `GET url`, expecting 200.
    pub async fn get_ok(&self, url: &str) -> Value {
        match self.get(url).await {
            (200, _, body) => body,
            (status, _, body) => panic!("GET {url}: {status}: {body}"),
        }
    }

    /// `POST /api/v1/orders` at gateway `gateway`, with an optional `Idempotency-Key`.
    pub async fn place_order(&self, gateway: usize, body: &Value, key: Option<&str>) -> Placed {
        let mut req = self
            .client
            .post(format!("{}/orders", self.api(gateway)))
            .json(body);
        if let Some(key) = key {
            req = req.header("idempotency-key", key);
        }
        let res = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("POST orders {body}: {e}"));
        let status = res.status().as_u16();
        let location = res
            .headers()
            .get("location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_string);
        let text = res.text().await.unwrap_or_default();
        let body = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("POST orders: {status}: not JSON ({e}): {text}"));
        Placed {
            status,
            location,
            body,
        }
    }

    /// Walks every page of a listing (`GET {api}/{what}?limit={page}`); returns the items
    /// and every page's `missing_shards`.
    pub async fn walk(&self, what: &str, page: usize) -> (Vec<Value>, Vec<Vec<u64>>) {
        let mut items = Vec::new();
        let mut missing = Vec::new();
        let mut after: Option<String> = None;
        for n in 0.. {
            let mut url = format!("{}/{what}?limit={page}", self.api(n));
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let body = self.get_ok(&url).await;
            let list = body[what]
                .as_array()
                .unwrap_or_else(|| panic!("no {what} array: {body}"));
            items.extend(list.iter().cloned());
            let gone: Vec<u64> = body["missing_shards"]
                .as_array()
                .unwrap_or_else(|| panic!("no missing_shards: {body}"))
                .iter()
                .filter_map(Value::as_u64)
                .collect();
            assert_eq!(body["partial"], !gone.is_empty(), "{body}");
            missing.push(gone);
            match body["next_after"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
        }
        (items, missing)
    }
}

/// The platform server's fault-injection variable: with `1`, the instance answers 500 to
/// everything but its health, metrics and peers endpoints. Pass it with `Command::env`.
pub const FAULT_HTTP_500: &str = "SVC_FAULT_HTTP_500";

// ---------------------------------------------------------------------------------------
// A cluster for fault tests (tests/chaos.rs): the roles of a [`ShardedCluster`], but with
// several registries (every instance registers at all of them), every instance
// restartable in place (same id, data dir and shard; a gateway also on the same port,
// since clients know gateways by address), and the invariants checked across shards.

/// Whether `e` is a refused connection: nothing listened, so the request was never sent.
pub fn is_refused(e: &reqwest::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::ConnectionRefused {
                return true;
            }
        }
        source = err.source();
    }
    false
}

/// The sum of the samples of metric `name` whose labels include every pair of `labels`
/// (`None` when there is no such sample).
pub fn metric_sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric_name, rest) = series.split_once('{').unwrap_or((series, ""));
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (metric_name == name && all)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Milliseconds since the Unix epoch (the registry's `renewed_at_ms` clock).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// One instance of a [`ChaosCluster`].
pub struct Member {
    pub role: String,
    /// `gw-N` for gateways, `role-N` (shard N) for the stateful roles.
    pub id: String,
    pub shard: Option<u32>,
    /// The port it is started on: fixed after the first start for gateways, else 0.
    pub port: u16,
    pub svc: Svc,
}

/// See the section comment. Fields drop (SIGKILL) in declaration order: the instances,
/// then the registries, then the temporary directory.
pub struct ChaosCluster {
    pub members: Vec<Member>,
    pub registries: Vec<Svc>,
    registry_ports: Vec<u16>,
    pub options: ShardedOptions,
    config: PathBuf,
    pub client: reqwest::Client,
    pub cluster: Cluster,
}

impl ChaosCluster {
    /// Starts `registries` registries, then every shard of every stateful role, then the
    /// gateways, and waits until everyone is registered everywhere and knows its peers.
    pub async fn start(options: ShardedOptions, registries: usize) -> ChaosCluster {
        let cluster = Cluster::new();
        let config = cluster.write_file(
            "chaos.yaml",
            "orders:\n  create_wait: 5s\n  step_retry_max: 500ms\n",
        );
        let mut chaos = ChaosCluster {
            members: Vec::new(),
            registries: Vec::new(),
            registry_ports: vec![0; registries],
            options,
            config,
            client: http(),
            cluster,
        };
        for n in 0..registries {
            let svc = chaos.spawn_registry(n);
            chaos.registry_ports[n] = svc.port();
            chaos.registries.push(svc);
        }
        for role in ["inventory", "payments", "notifications", "orders"] {
            for shard in 0..chaos.options.count(role) {
                let id = format!("{role}-{shard}");
                let svc = chaos.spawn(role, &id, Some(shard), 0);
                chaos.members.push(Member {
                    role: role.to_string(),
                    id,
                    shard: Some(shard),
                    port: 0,
                    svc,
                });
            }
        }
        for n in 0..chaos.options.gateways {
            let id = format!("gw-{n}");
            let svc = chaos.spawn("gateway", &id, None, 0);
            chaos.members.push(Member {
                role: "gateway".to_string(),
                id,
                shard: None,
                port: svc.port(),
                svc,
            });
        }
        for i in 0..chaos.members.len() {
            chaos.wait_in_views(i).await;
        }
        chaos
    }
}

impl ChaosCluster {
    /// Every registry's URL, comma-separated: what each instance gets as `--registry`.
    pub fn registry_urls(&self) -> String {
        let urls: Vec<String> = self
            .registry_ports
            .iter()
            .map(|p| format!("http://127.0.0.1:{p}"))
            .collect();
        urls.join(",")
    }

    /// Starts registry `reg-n` on its port (any port the first time) with its own data
    /// dir, so a restart comes back with what it had written.
    pub fn spawn_registry(&self, n: usize) -> Svc {
        let mut cmd = svc_command();
        cmd.arg("run")
            .args(["--role", "registry"])
            .args(["--listen", &format!("127.0.0.1:{}", self.registry_ports[n])])
            .arg("--data-dir")
            .arg(self.cluster.data_dir().join(format!("reg-{n}")))
            .args(["--instance-id", &format!("reg-{n}")])
            .arg("--config")
            .arg(self.cluster.registry_config());
        Svc::spawn(cmd, &format!("registry/reg-{n}")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts instance `id` of `role` (shard `shard`) on `port` (0: any).
    pub fn spawn(&self, role: &str, id: &str, shard: Option<u32>, port: u16) -> Svc {
        let mut cmd = svc_command();
        cmd.arg("run")
            .args(["--role", role])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(self.cluster.data_dir())
            .args(["--instance-id", id])
            .args(["--registry", &self.registry_urls()])
            .arg("--config")
            .arg(&self.config)
            .args(["--shards", &self.options.shards_flag()]);
        if let Some(shard) = shard {
            cmd.args(["--shard", &shard.to_string()]);
        }
        self.cluster.start_cmd(cmd, role, id)
    }

    /// Starts member `i` again, as it was (after the test killed or stopped it).
    pub fn respawn(&mut self, i: usize) {
        let m = &self.members[i];
        let svc = self.spawn(&m.role, &m.id, m.shard, m.port);
        self.members[i].svc = svc;
    }

    /// The index of the member with instance id `id`.
    pub fn index(&self, id: &str) -> usize {
        self.members
            .iter()
            .position(|m| m.id == id)
            .unwrap_or_else(|| panic!("no member `{id}`"))
    }

    pub fn member(&self, id: &str) -> &Member {
        &self.members[self.index(id)]
    }

    /// The gateways' base URLs, in order (stable: a gateway restarts on its port).
    pub fn gateway_urls(&self) -> Vec<String> {
        self.members
            .iter()
            .filter(|m| m.role == "gateway")
            .map(|m| m.svc.url.clone())
            .collect()
    }

    /// The public API base of gateway `n` (wrapping around the gateways).
    pub fn api(&self, n: usize) -> String {
        let urls = self.gateway_urls();
        format!("{}/api/v1", urls[n % urls.len()])
    }

    /// The members that call member `i`'s role: the gateways call every role, orders
    /// calls inventory and payments and sends events to notifications.
    pub fn callers(&self, i: usize) -> Vec<usize> {
        let role = self.members[i].role.as_str();
        (0..self.members.len())
            .filter(|&c| match self.members[c].role.as_str() {
                "gateway" => role != "gateway",
                "orders" => matches!(role, "inventory" | "payments" | "notifications"),
                _ => false,
            })
            .collect()
    }

    /// Waits until member `i`, as it runs now, is in every registry's catalog and in the
    /// peers view of every member that calls it.
    pub async fn wait_in_views(&self, i: usize) {
        let svc = &self.members[i].svc;
        for registry in &self.registries {
            wait_registered(registry, &[svc]).await;
        }
        for c in self.callers(i) {
            wait_peers(&self.members[c].svc, &[svc]).await;
        }
    }

    pub async fn create_product(&self, sku: &str, price_minor: u64, stock: u64) {
        let body = serde_json::json!({
            "sku": sku, "name": format!("Product {sku}"),
            "price_minor": price_minor, "stock": stock,
        });
        let res = post_json(&format!("{}/products", self.api(0)), &body).await;
        let status = res.status();
        let text = res.text().await.unwrap_or_default();
        assert_eq!(status, 201, "create product {sku}: {text}");
    }

    /// Every order, through the gateways' merged listing; `Err` if a shard is missing.
    pub async fn try_all_orders(&self) -> Result<Vec<Value>, String> {
        let mut all = Vec::new();
        let mut after: Option<String> = None;
        for n in 0.. {
            let mut url = format!("{}/orders?limit=1000", self.api(n));
            if let Some(a) = &after {
                url.push_str(&format!("&after={a}"));
            }
            let body = try_get_json(&url).await?;
            if body["partial"] != false {
                return Err(format!("partial listing: {}", body["missing_shards"]));
            }
            let orders = body["orders"]
                .as_array()
                .ok_or_else(|| format!("no orders array: {body}"))?;
            all.extend(orders.iter().cloned());
            match body["next_after"].as_str() {
                Some(next) => after = Some(next.to_string()),
                None => break,
            }
        }
        Ok(all)
    }

    /// Waits until no order is pending; returns every order.
    pub async fn wait_all_final(&self, timeout: Duration) -> Vec<Value> {
        wait_for("every order to end", timeout, || async {
            let all = self.try_all_orders().await?;
            let pending: Vec<&str> = all
                .iter()
                .filter(|o| o["status"] == "pending")
                .map(|o| str_of(o, "id"))
                .collect();
            if pending.is_empty() {
                Ok(all)
            } else {
                Err(format!("{} pending: {pending:?}", pending.len()))
            }
        })
        .await
        .0
    }

    fn shard_members(&self, role: &str) -> Vec<&Member> {
        let mut shards: Vec<&Member> = self.members.iter().filter(|m| m.role == role).collect();
        shards.sort_by_key(|m| m.shard);
        shards
    }

    /// The invariants of docs/ARCHITECTURE.md once every saga has ended and every event
    /// was delivered, across every shard: for each product `initial = available +
    /// reserved + sold` with nothing reserved or held and `sold` = the confirmed orders'
    /// lines; one capture per confirmed order (for its total, on its payments shard) and
    /// none for the others, the captured sum = the confirmed totals, no authorization
    /// left open; exactly one notification per order, of its final kind, on its shard.
    pub async fn assert_settled(&self, initial: &[(String, u64)], orders: &[Value]) {
        for inv in self.shard_members("inventory") {
            let url = format!("{}/v1/reservations?status=held", inv.svc.url);
            let held = get_json(&url).await;
            assert_eq!(
                held["reservations"].as_array().map(Vec::len),
                Some(0),
                "{}: reservations still held: {held}",
                inv.id
            );
        }
        let mut sold_by_orders: std::collections::HashMap<&str, u64> = Default::default();
        for o in orders.iter().filter(|o| o["status"] == "confirmed") {
            for line in o["lines"].as_array().into_iter().flatten() {
                *sold_by_orders.entry(str_of(line, "sku")).or_default() += u64_of(line, "quantity");
            }
        }
        for (sku, stock) in initial {
            let p = get_json(&format!("{}/products/{sku}", self.api(0))).await;
            let (available, reserved, sold) = (
                u64_of(&p, "available"),
                u64_of(&p, "reserved"),
                u64_of(&p, "sold"),
            );
            assert_eq!(
                available + reserved + sold,
                *stock,
                "{sku}: available {available} + reserved {reserved} + sold {sold} != {stock}"
            );
            assert_eq!(reserved, 0, "{sku}: units still reserved");
            assert_eq!(
                sold,
                sold_by_orders.get(sku.as_str()).copied().unwrap_or(0),
                "{sku}: sold units differ from the confirmed orders' lines"
            );
        }

        // Payments, shard by shard.
        let payments = self.shard_members("payments");
        let mut ledgers = Vec::new();
        for p in &payments {
            ledgers.push(get_json(&format!("{}/v1/ledger", p.svc.url)).await);
        }
        let count = |ledger: &Value, id: &str, kind: &str| {
            ledger["entries"]
                .as_array()
                .into_iter()
                .flatten()
                .filter(|e| e["order_id"] == id && e["kind"] == kind)
                .count()
        };
        let mut confirmed_total = 0;
        for o in orders {
            let id = str_of(o, "id");
            let shard = shard_for_key(id, self.options.payments) as usize;
            let ledger = &ledgers[shard];
            assert!(
                count(ledger, id, "authorize") <= 1,
                "{id}: authorized twice"
            );
            match str_of(o, "status") {
                "confirmed" => {
                    let total = u64_of(o, "total_minor");
                    confirmed_total += total;
                    assert_eq!(count(ledger, id, "capture"), 1, "{id}: captures: {ledger}");
                    let capture = ledger["entries"]
                        .as_array()
                        .into_iter()
                        .flatten()
                        .find(|e| e["order_id"] == id && e["kind"] == "capture")
                        .unwrap();
                    assert_eq!(u64_of(capture, "amount_minor"), total, "{id}: {o}");
                }
                "cancelled" => {
                    assert_eq!(
                        count(ledger, id, "capture"),
                        0,
                        "{id}: cancelled but captured"
                    );
                    assert!(o["reason"].is_string(), "cancelled without reason: {o}");
                }
                other => panic!("order {id} is {other}: {o}"),
            }
        }
        let captured: u64 = ledgers
            .iter()
            .map(|l| u64_of(l, "captured_total_minor"))
            .sum();
        assert_eq!(captured, confirmed_total, "captured vs confirmed totals");
        for l in &ledgers {
            assert_eq!(u64_of(l, "authorized_open_minor"), 0, "open: {l}");
        }

        // Notifications: one per order, on the shard its id hashes to.
        let shards = self.shard_members("notifications");
        let urls: Vec<String> = shards
            .iter()
            .map(|m| format!("{}/v1/notifications", m.svc.url))
            .collect();
        let (per_shard, _) = wait_for(
            "one notification per order",
            Duration::from_secs(30),
            || async {
                let mut per_shard = Vec::new();
                for url in &urls {
                    let body = try_get_json(url).await?;
                    per_shard.push(
                        body["notifications"]
                            .as_array()
                            .cloned()
                            .unwrap_or_default(),
                    );
                }
                let n: usize = per_shard.iter().map(Vec::len).sum();
                if n >= orders.len() {
                    Ok(per_shard)
                } else {
                    Err(format!("{n} of {}", orders.len()))
                }
            },
        )
        .await;
        let total: usize = per_shard.iter().map(Vec::len).sum();
        assert_eq!(total, orders.len(), "more notifications than orders");
        for o in orders {
            let id = str_of(o, "id");
            let shard = shard_for_key(id, self.options.notifications) as usize;
            let mine: Vec<&Value> = per_shard[shard]
                .iter()
                .filter(|n| n["order_id"] == id)
                .collect();
            assert_eq!(
                mine.len(),
                1,
                "{id}: notifications on shard {shard}: {mine:?}"
            );
            let kind = format!("order.{}", str_of(o, "status"));
            assert_eq!(mine[0]["kind"], kind.as_str(), "{id}: {o}");
        }
    }
}
