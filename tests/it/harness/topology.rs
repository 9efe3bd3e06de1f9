//! A cluster of real `svc` processes, described by a [`Topology`] and started with
//! [`Topology::start`]: registries first, then every role's instances with the roles a
//! role calls (or sends events to) before it, and the test waits until every instance
//! is in every registry's catalog and in the peers view of every instance that calls
//! it. The [`Cluster`] it returns owns the processes: it restarts an instance in place
//! (same id, data, shard, and for a public role the same port, since clients know it
//! by address), and dropping it SIGKILLs every one, also when the test panics.
//!
//! What each role calls and which roles are sharded come from the roles' manifests
//! (`svc::roles::built_in()`), never from a list in the tests. Instance `n` of role `r`
//! is `r-n` (for a sharded role, shard `n`); registry `n` is `reg-n`.

use std::collections::BTreeMap;
use std::ops::{Index, IndexMut};
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use svc_platform::manifest::Manifest;

use super::http::{http, lists, try_get_json, wait_for, wait_peers, wait_registered};
use super::process::{svc_command, Svc};
use super::sandbox::Sandbox;

/// The parsed manifests of every role this binary runs, the registry first.
pub fn manifests() -> Vec<Manifest> {
    svc::roles::built_in().iter().cloned().collect()
}

/// Every role's name, the registry first.
pub fn all_roles() -> Vec<String> {
    manifests().into_iter().map(|m| m.name).collect()
}

fn manifest(role: &str) -> Manifest {
    manifests()
        .into_iter()
        .find(|m| m.name == role)
        .unwrap_or_else(|| panic!("no role `{role}`"))
}

/// The role instances register with: the one that does not register itself.
fn registry_role() -> String {
    manifests()
        .into_iter()
        .find(Manifest::is_registry)
        .map(|m| m.name)
        .expect("a registry role")
}

/// Whether instances of `caller` send requests or events to instances of `callee`.
fn calls(caller: &Manifest, callee: &Manifest) -> bool {
    caller.calls.contains(&callee.name)
        || caller
            .publishes
            .iter()
            .any(|topic| callee.consumes.contains(topic))
}

/// What to start. See the module docs.
#[derive(Clone, Debug)]
pub struct Topology {
    registries: usize,
    /// Instances per role (shards, for a sharded role), in no particular order.
    instances: BTreeMap<String, u32>,
    create_wait: Duration,
    step_retry_max: Duration,
    config: String,
    /// Extra environment of every instance of a role.
    env: BTreeMap<String, Vec<(String, String)>>,
    json_debug_logs: bool,
    /// `--log-file <data dir>/logs/<id>.jsonl` on every instance.
    log_files: bool,
    /// Files put in the data directory before anything starts: `(name, contents)`.
    seed: Vec<(String, Vec<u8>)>,
}

impl Default for Topology {
    fn default() -> Self {
        Self::new()
    }
}

impl Topology {
    /// One registry and nothing else.
    pub fn new() -> Topology {
        Topology {
            registries: 1,
            instances: BTreeMap::new(),
            // Generous: a confirmed order answers 201 even on a loaded CI machine.
            create_wait: Duration::from_secs(5),
            // Short, so sagas resume quickly after a peer comes back.
            step_retry_max: Duration::from_millis(500),
            config: String::new(),
            env: BTreeMap::new(),
            json_debug_logs: false,
            log_files: false,
            seed: Vec::new(),
        }
    }

    /// The whole shop: one registry and one instance of every other role.
    pub fn shop() -> Topology {
        let registry = registry_role();
        let mut topology = Topology::new();
        for role in all_roles().into_iter().filter(|r| *r != registry) {
            topology.instances.insert(role, 1);
        }
        topology
    }

    /// `n` registries; every instance registers at all of them.
    pub fn registries(mut self, n: usize) -> Topology {
        assert!(n > 0, "at least one registry");
        self.registries = n;
        self
    }

    /// `n` shards of the sharded role `role`.
    pub fn shards(mut self, role: &str, n: u32) -> Topology {
        assert!(manifest(role).is_sharded(), "`{role}` is not sharded");
        self.instances.insert(role.to_string(), n);
        self
    }

    /// `n` shards of every sharded role.
    pub fn sharded(mut self, n: u32) -> Topology {
        for m in manifests().iter().filter(|m| m.is_sharded()) {
            self.instances.insert(m.name.clone(), n);
        }
        self
    }

    /// `n` gateways.
    pub fn gateways(mut self, n: u32) -> Topology {
        self.instances.insert("gateway".to_string(), n);
        self
    }

    /// `orders.create_wait`: how long a create waits for its saga before answering 202.
    pub fn create_wait(mut self, wait: Duration) -> Topology {
        self.create_wait = wait;
        self
    }

    /// More YAML for the shared config file (top-level sections other than `orders`),
    /// e.g. `"http:\n  call_timeout: 500ms\n"`.
    pub fn config(mut self, yaml: &str) -> Topology {
        self.config.push_str(yaml);
        self
    }

    /// Sets `key=value` in the environment of every instance of `role` (e.g. a fault
    /// hook), also when it is restarted, until [`Cluster::restart_with`] says otherwise.
    pub fn env(mut self, role: &str, key: &str, value: &str) -> Topology {
        self.env
            .entry(role.to_string())
            .or_default()
            .push((key.to_string(), value.to_string()));
        self
    }

    /// Puts `contents` in the data directory as `name` before anything starts, e.g. an
    /// instance's state file (`<role>-<instance id>.redb`) written by an older svc.
    pub fn seed_data(mut self, name: &str, contents: Vec<u8>) -> Topology {
        self.seed.push((name.to_string(), contents));
        self
    }

    /// `--log-format json` and `RUST_LOG=info,svc=debug` on every role but the registry.
    pub fn json_debug_logs(mut self) -> Topology {
        self.json_debug_logs = true;
        self
    }

    /// Every instance (registries too) appends its log lines to
    /// `<data dir>/logs/<instance id>.jsonl`, as under `svc dev`.
    pub fn log_files(mut self) -> Topology {
        self.log_files = true;
        self
    }

    /// The roles with instances, each after the roles it calls or sends events to.
    fn start_order(&self) -> Vec<String> {
        let mut left: Vec<Manifest> = manifests()
            .into_iter()
            .filter(|m| self.instances.get(&m.name).is_some_and(|&n| n > 0))
            .collect();
        let mut order: Vec<String> = Vec::new();
        while !left.is_empty() {
            let ready = left
                .iter()
                .position(|m| {
                    !left
                        .iter()
                        .any(|other| other.name != m.name && calls(m, other))
                })
                .expect("roles do not call each other in a cycle");
            order.push(left.remove(ready).name);
        }
        order
    }

    /// Starts everything and waits until it is connected (see the module docs).
    pub async fn start(self) -> Cluster {
        let sandbox = Sandbox::new();
        if !self.seed.is_empty() {
            std::fs::create_dir_all(sandbox.data_dir()).expect("data dir");
        }
        for (name, contents) in &self.seed {
            std::fs::write(sandbox.data_dir().join(name), contents).expect("seed file");
        }
        let config = sandbox.write_file(
            "cluster.yaml",
            &format!(
                "orders:\n  create_wait: {}ms\n  step_retry_max: {}ms\n{}",
                self.create_wait.as_millis(),
                self.step_retry_max.as_millis(),
                self.config
            ),
        );
        let mut cluster = Cluster {
            members: Vec::new(),
            registries: Vec::new(),
            registry_ports: vec![0; self.registries],
            client: http(),
            api: String::new(),
            config,
            topology: self,
            sandbox,
        };
        for n in 0..cluster.topology.registries {
            let svc = cluster.spawn_registry(n);
            cluster.registry_ports[n] = svc.port();
            cluster.registries.push(svc);
        }
        for role in cluster.topology.start_order() {
            let sharded = manifest(&role).is_sharded();
            for n in 0..cluster.topology.instances[&role] {
                let mut member = Member {
                    id: format!("{role}-{n}"),
                    shard: sharded.then_some(n),
                    role: role.clone(),
                    port: 0,
                    env: cluster.topology.env.get(&role).cloned().unwrap_or_default(),
                    svc: None,
                };
                let svc = cluster.spawn(&member);
                if manifest(&role).public {
                    member.port = svc.port();
                }
                member.svc = Some(svc);
                cluster.members.push(member);
            }
        }
        if cluster.has("gateway-0") {
            cluster.api = format!("{}/api/v1", cluster["gateway-0"].url);
        }
        cluster.wait_connected().await;
        cluster
    }
}

/// One instance of a [`Cluster`].
pub struct Member {
    pub role: String,
    /// `role-n`.
    pub id: String,
    /// Its shard, for a sharded role.
    pub shard: Option<u32>,
    /// The port it is started on: for a public role fixed after the first start (its
    /// clients know it by address), else 0.
    pub port: u16,
    env: Vec<(String, String)>,
    svc: Option<Svc>,
}

impl Member {
    /// The running process.
    pub fn svc(&self) -> &Svc {
        self.svc.as_ref().expect("every member runs")
    }

    pub fn svc_mut(&mut self) -> &mut Svc {
        self.svc.as_mut().expect("every member runs")
    }
}

/// A started [`Topology`]. Fields drop in declaration order: the instances (SIGKILL),
/// then the registries, then the temporary directory.
pub struct Cluster {
    /// Every instance but the registries, in start order.
    pub members: Vec<Member>,
    pub registries: Vec<Svc>,
    registry_ports: Vec<u16>,
    /// One client for the test (no connection reuse, see [`http`]).
    pub client: reqwest::Client,
    /// The public API base of the first gateway, e.g. `http://127.0.0.1:41234/api/v1`
    /// (empty without a gateway); stable, since a gateway restarts on its port.
    pub api: String,
    config: PathBuf,
    pub topology: Topology,
    pub sandbox: Sandbox,
}

impl Index<&str> for Cluster {
    type Output = Svc;

    /// The instance with id `id`, e.g. `cluster["orders-0"]`.
    fn index(&self, id: &str) -> &Svc {
        self.member(id).svc()
    }
}

impl IndexMut<&str> for Cluster {
    fn index_mut(&mut self, id: &str) -> &mut Svc {
        let i = self.index_of(id);
        self.members[i].svc_mut()
    }
}

impl Cluster {
    /// The first registry.
    pub fn registry(&self) -> &Svc {
        &self.registries[0]
    }

    /// Every registry's URL, comma-separated: what each instance gets as `--registry`.
    pub fn registry_urls(&self) -> String {
        let urls: Vec<String> = self
            .registry_ports
            .iter()
            .map(|p| format!("https://127.0.0.1:{p}"))
            .collect();
        urls.join(",")
    }

    /// Whether an instance `id` is part of the cluster.
    pub fn has(&self, id: &str) -> bool {
        self.members.iter().any(|m| m.id == id)
    }

    /// The index in [`Cluster::members`] of instance `id`.
    pub fn index_of(&self, id: &str) -> usize {
        self.members
            .iter()
            .position(|m| m.id == id)
            .unwrap_or_else(|| panic!("no instance `{id}`"))
    }

    pub fn member(&self, id: &str) -> &Member {
        &self.members[self.index_of(id)]
    }

    /// The instances of `role`, by shard.
    pub fn instances(&self, role: &str) -> Vec<&Svc> {
        self.members
            .iter()
            .filter(|m| m.role == role)
            .map(Member::svc)
            .collect()
    }

    /// How many instances (shards) of `role` run.
    pub fn count(&self, role: &str) -> u32 {
        self.topology.instances.get(role).copied().unwrap_or(0)
    }

    /// The `--shards` every instance gets: the shard count of every sharded role.
    pub fn shards_flag(&self) -> String {
        let counts: Vec<String> = manifests()
            .iter()
            .filter(|m| m.is_sharded())
            .map(|m| format!("{}={}", m.name, self.count(&m.name).max(1)))
            .collect();
        counts.join(",")
    }

    /// The gateways' base URLs, in order (stable: a gateway restarts on its port).
    pub fn gateway_urls(&self) -> Vec<String> {
        self.instances("gateway")
            .iter()
            .map(|s| s.url.clone())
            .collect()
    }

    /// The public API base of gateway `n` (wrapping around the gateways).
    pub fn api_at(&self, n: usize) -> String {
        let urls = self.gateway_urls();
        format!("{}/api/v1", urls[n % urls.len()])
    }

    /// Starts registry `reg-n` on its port (any port the first time) with its own data
    /// dir, so a restart comes back with what it had written.
    fn spawn_registry(&self, n: usize) -> Svc {
        let mut cmd = svc_command();
        cmd.arg("run")
            .args(["--role", &registry_role()])
            .args(["--listen", &format!("127.0.0.1:{}", self.registry_ports[n])])
            .arg("--data-dir")
            .arg(self.sandbox.data_dir().join(format!("reg-{n}")))
            .args(["--instance-id", &format!("reg-{n}")])
            .arg("--config")
            .arg(self.sandbox.registry_config());
        if self.topology.log_files {
            cmd.arg("--log-file")
                .arg(self.log_file(&format!("reg-{n}")));
        }
        Svc::spawn(cmd, &format!("registry/reg-{n}")).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Registry `n` again, on its port and with its data (after the test killed it).
    pub fn restart_registry(&mut self, n: usize) {
        let svc = self.spawn_registry(n);
        self.registries[n] = svc;
    }

    /// The `svc run` command of `member`.
    fn command(&self, member: &Member) -> Command {
        let mut cmd = svc_command();
        cmd.arg("run")
            .args(["--role", &member.role])
            .args(["--listen", &format!("127.0.0.1:{}", member.port)])
            .arg("--data-dir")
            .arg(self.sandbox.data_dir())
            .args(["--instance-id", &member.id])
            .args(["--registry", &self.registry_urls()])
            .arg("--config")
            .arg(&self.config)
            .args(["--shards", &self.shards_flag()]);
        if let Some(shard) = member.shard {
            cmd.args(["--shard", &shard.to_string()]);
        }
        if self.topology.log_files {
            cmd.arg("--log-file").arg(self.log_file(&member.id));
        }
        if self.topology.json_debug_logs {
            cmd.args(["--log-format", "json"])
                .env("RUST_LOG", "info,svc=debug");
        }
        for (k, v) in &member.env {
            cmd.env(k, v);
        }
        cmd
    }

    fn log_file(&self, id: &str) -> PathBuf {
        self.sandbox
            .data_dir()
            .join("logs")
            .join(format!("{id}.jsonl"))
    }

    /// SIGTERMs every instance, then the registries, and waits for each to exit: their
    /// files are then complete.
    pub fn stop_all(&mut self) {
        for member in self.members.iter_mut().rev() {
            if let Some(svc) = member.svc.as_mut() {
                svc.terminate();
            }
        }
        for registry in &mut self.registries {
            registry.terminate();
        }
    }

    fn spawn(&self, member: &Member) -> Svc {
        let label = format!("{}/{}", member.role, member.id);
        Svc::spawn(self.command(member), &label).unwrap_or_else(|e| panic!("{e}"))
    }

    /// Starts instance `id` again as it was (after the test killed or stopped it; a
    /// running one is SIGKILLed first). Does not wait for it to be in the views.
    pub fn restart(&mut self, id: &str) {
        let i = self.index_of(id);
        // The old process is gone before the new one opens its store.
        self.members[i].svc = None;
        let svc = self.spawn(&self.members[i]);
        self.members[i].svc = Some(svc);
    }

    /// [`Cluster::restart`] with `env` as its whole extra environment from now on.
    pub fn restart_with(&mut self, id: &str, env: &[(&str, &str)]) {
        let i = self.index_of(id);
        self.members[i].env = env
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        self.restart(id);
    }

    /// The members that call member `i` or send it events (see the roles' manifests).
    pub fn callers(&self, i: usize) -> Vec<usize> {
        let callee = manifest(&self.members[i].role);
        (0..self.members.len())
            .filter(|&c| calls(&manifest(&self.members[c].role), &callee))
            .collect()
    }

    /// Waits until member `i`, as it runs now, is in every registry's catalog and in the
    /// peers view of every member that calls it.
    pub async fn wait_in_views(&self, i: usize) {
        let svc = self.members[i].svc();
        for registry in &self.registries {
            wait_registered(registry, &[svc]).await;
        }
        for c in self.callers(i) {
            wait_peers(self.members[c].svc(), &[svc]).await;
        }
    }

    /// [`Cluster::wait_in_views`] of every member.
    pub async fn wait_connected(&self) {
        for i in 0..self.members.len() {
            self.wait_in_views(i).await;
        }
    }

    /// Waits until `svc`'s view of its peers no longer lists any of `gone`.
    pub async fn wait_forgotten(&self, svc: &Svc, gone: &[&Svc]) {
        let url = format!("{}/v1/peers", svc.internal_url);
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
}
