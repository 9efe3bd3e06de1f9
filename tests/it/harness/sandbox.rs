//! One test's sandbox: a temporary directory (data dirs, config files) and the
//! `svc run` commands that use it, each binding `127.0.0.1:0` so tests run in parallel.
//! For tests that start single processes by hand with their own flags; a whole
//! cluster comes from a [`Topology`](super::Topology).

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use super::process::{svc_command, Svc};

/// Lease timing the test registries grant (see [`Sandbox::registry_config`]).
pub const LEASE_TTL: Duration = Duration::from_secs(1);
pub const RENEW_INTERVAL: Duration = Duration::from_millis(250);

/// One test's world: a temporary directory and the commands that run `svc` in it. The
/// directory is removed when it drops.
pub struct Sandbox {
    pub dir: tempfile::TempDir,
}

impl Default for Sandbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Sandbox {
    pub fn new() -> Sandbox {
        Sandbox {
            dir: tempfile::Builder::new()
                .prefix("svc-it-")
                .tempdir()
                .expect("tempdir"),
        }
    }

    /// The `--data-dir` every instance of this sandbox uses.
    pub fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// Writes `text` to `name` in the sandbox directory and returns the path.
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
        Svc::spawn(self.registry_command(port), "registry/reg-0").unwrap_or_else(|e| panic!("{e}"))
    }

    /// The command of [`Sandbox::start_registry_on`], for more flags.
    pub fn registry_command(&self, port: u16) -> Command {
        let mut cmd = svc_command();
        cmd.arg("run")
            .args(["--role", "registry"])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .arg("--data-dir")
            .arg(self.data_dir())
            .args(["--instance-id", "reg-0"])
            .arg("--config")
            .arg(self.registry_config());
        cmd
    }

    /// Starts instance `id` of `role`, registering at `registry`.
    pub fn start(&self, role: &str, id: &str, registry: &str) -> Svc {
        self.start_cmd(self.run_command(role, id, registry), role, id)
    }

    /// Starts a prepared command (e.g. [`Sandbox::run_command`] with extra flags).
    pub fn start_cmd(&self, cmd: Command, role: &str, id: &str) -> Svc {
        Svc::spawn(cmd, &format!("{role}/{id}")).unwrap_or_else(|e| panic!("{e}"))
    }
}
