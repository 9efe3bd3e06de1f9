//! `svc dev`: the whole system comes up registered and ready, and leaves nothing behind.

use std::io::{BufRead, BufReader};
use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use crate::harness::*;
use nix::sys::signal::{self, Signal};
use nix::unistd::Pid;

/// A free port for the fixed-port roles: `svc dev` needs concrete ports for the
/// registry and the gateway, so ask the OS for one and hand it over.
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// Pids of every process whose command line mentions `needle` (our data dir).
fn processes_mentioning(needle: &Path) -> Vec<i32> {
    let needle = needle.to_string_lossy().to_string();
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(&needle) && pid != std::process::id() as i32 {
                found.push(pid);
            }
        }
    }
    found
}

/// Kills `svc dev` and anything it started if the test fails half-way.
struct DevGuard {
    child: Child,
    data_dir: std::path::PathBuf,
}

impl Drop for DevGuard {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        for pid in processes_mentioning(&self.data_dir) {
            let _ = signal::kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
}

/// A running `svc dev` in a sandbox, with its fixed ports and the table it printed.
struct Dev {
    guard: DevGuard,
    data_dir: std::path::PathBuf,
    registry_port: u16,
    gateway_port: u16,
    table: Vec<String>,
}

impl Dev {
    /// Starts `svc dev` with `args` and waits for its table (every instance ready).
    async fn start(sandbox: &Sandbox, args: &[&str]) -> Dev {
        let data_dir = sandbox.data_dir().join("dev");
        let (registry_port, gateway_port) = (free_port(), free_port());
        let mut cmd = svc_command();
        cmd.args(["dev", "--data-dir"])
            .arg(&data_dir)
            .args(["--registry-port", &registry_port.to_string()])
            .args(["--gateway-port", &gateway_port.to_string()])
            .args(args)
            .stderr(Stdio::null());
        let child = cmd.spawn().expect("svc dev starts");
        let mut guard = DevGuard {
            child,
            data_dir: data_dir.clone(),
        };
        // The table comes on stdout once every instance is ready and registered.
        let stdout = guard.child.stdout.take().expect("piped stdout");
        let table = tokio::task::spawn_blocking(move || {
            let mut lines = Vec::new();
            for line in BufReader::new(stdout).lines() {
                let line = line.expect("readable stdout");
                let done = line.contains("instances ready in");
                lines.push(line);
                if done {
                    break;
                }
            }
            lines
        });
        let table = tokio::time::timeout(Duration::from_secs(60), table)
            .await
            .expect("svc dev became ready within 60 s")
            .expect("stdout reader");
        Dev {
            guard,
            data_dir,
            registry_port,
            gateway_port,
            table,
        }
    }

    /// A client with the operator identity and API key `svc dev` made in its data dir.
    fn client(&self) -> reqwest::Client {
        let key = std::fs::read_to_string(self.data_dir.join("api-key")).expect("dev API key");
        client_of(&self.data_dir.join("tls"), "operator", key.trim())
    }

    /// The pid of the running child with `instance_id`.
    fn pid_of(&self, instance_id: &str) -> Option<i32> {
        let flag = format!(" --instance-id {instance_id} ");
        processes_mentioning(&self.data_dir)
            .into_iter()
            .find(|pid| {
                std::fs::read(format!("/proc/{pid}/cmdline"))
                    .map(|c| {
                        String::from_utf8_lossy(&c)
                            .replace('\0', " ")
                            .contains(&flag)
                    })
                    .unwrap_or(false)
            })
    }
}

#[tokio::test]
async fn dev_starts_every_role_ready_and_stops_without_leftovers() {
    let sandbox = Sandbox::new();
    let Dev {
        mut guard,
        data_dir,
        registry_port,
        gateway_port,
        table,
    } = Dev::start(&sandbox, &[]).await;

    // Every role, the registry first.
    let roles = all_roles();
    for role in &roles {
        assert!(
            table.iter().any(|l| l.starts_with(role)),
            "{role} missing from the table:\n{}",
            table.join("\n")
        );
    }

    // Every role but the registry is registered, and each answers ready.
    // With the operator identity and API key svc dev made in its data dir.
    let key = std::fs::read_to_string(data_dir.join("api-key")).expect("dev API key");
    let client = client_of(&data_dir.join("tls"), "operator", key.trim());
    let get_json = |url: String| {
        let client = client.clone();
        async move {
            let res = client.get(&url).send().await.expect("answer");
            assert_eq!(res.status(), 200, "{url}");
            res.json::<serde_json::Value>().await.expect("JSON")
        }
    };
    let registry = format!("https://127.0.0.1:{registry_port}");
    let catalog = get_json(format!("{registry}/v1/catalog")).await;
    for role in &roles[1..] {
        let instances = catalog["roles"][role]
            .as_array()
            .cloned()
            .unwrap_or_default();
        assert_eq!(instances.len(), 1, "{role} registered once: {catalog}");
        let address = instances[0]["address"].as_str().expect("address");
        let ready = client
            .get(format!("{address}/health/ready"))
            .send()
            .await
            .expect("instance answers");
        assert_eq!(ready.status(), 200, "{role} ready");
    }

    // The seed catalog is there, through the gateway on its fixed port.
    let products = get_json(format!("http://127.0.0.1:{gateway_port}/api/v1/products")).await;
    // The key is stored owner-only; the gateways got only its hash.
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(data_dir.join("api-key"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o077, 0, "api-key is readable by others");
    let shared = std::fs::read_to_string(data_dir.join("api-keys.yaml")).unwrap();
    assert!(
        !shared.contains(key.trim()),
        "the gateways' file holds the key itself"
    );
    assert!(
        products["products"]
            .as_array()
            .is_some_and(|p| p.len() >= 3),
        "seed catalog loaded: {products}"
    );
    assert!(!processes_mentioning(&data_dir).is_empty());

    // SIGTERM: everything stops, exit 0, nothing left behind.
    signal::kill(Pid::from_raw(guard.child.id() as i32), Signal::SIGTERM).expect("signal");
    let deadline = Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = guard.child.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "svc dev did not stop within 30 s"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(status.success(), "svc dev exit status: {status}");
    let left = processes_mentioning(&data_dir);
    assert!(left.is_empty(), "processes left behind: {left:?}");
}

#[tokio::test]
async fn a_child_restarted_while_the_registry_is_stopped_keeps_its_address() {
    let sandbox = Sandbox::new();
    let dev = Dev::start(&sandbox, &[]).await;
    let client = dev.client();
    // The order listing asks every orders shard; with none reachable it is 503.
    let listing = format!("http://127.0.0.1:{}/api/v1/orders", dev.gateway_port);
    let listed = || async {
        let res = client
            .get(&listing)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        match res.status().as_u16() {
            200 => Ok(()),
            status => Err(format!(
                "{status}: {}",
                res.text().await.unwrap_or_default()
            )),
        }
    };
    wait_for("the order listing", Duration::from_secs(10), listed).await;

    // The registry stops answering; meanwhile orders-0 crashes and is restarted.
    let registry = dev.pid_of("registry-0").expect("the registry runs");
    freeze_pid(registry, "registry-0");
    let crashed = dev.pid_of("orders-0").expect("orders-0 runs");
    signal::kill(Pid::from_raw(crashed), Signal::SIGKILL).expect("SIGKILL orders-0");
    wait_for(
        "orders-0 to be restarted",
        Duration::from_secs(10),
        || async {
            match dev.pid_of("orders-0") {
                Some(pid) if pid != crashed => Ok(()),
                other => Err(format!("pid {other:?}")),
            }
        },
    )
    .await;

    // The gateway still reaches it where it knew it: the child kept its port.
    let (_, took) = wait_for(
        "the order listing with the registry stopped",
        Duration::from_secs(20),
        listed,
    )
    .await;
    println!("orders-0 reachable again {took:?} after its restart, the registry stopped");
    signal::kill(Pid::from_raw(registry), Signal::SIGCONT).expect("SIGCONT registry");
    drop(dev.guard);
}
