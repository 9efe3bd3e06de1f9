//! Which instances `svc dev` starts, and the exact `svc run` arguments of each.
//!
//! Roles are told apart by their manifests, never by name: the role that does not
//! register is the registry; a registering role with a fixed default port is a public
//! edge (the gateway) and takes `--gateway-port`, then the next ports; every other role
//! takes a free port from the OS. A spec is fixed for the whole run, so a restarted child
//! comes back with the same instance id, port and data dir; a child whose port the OS
//! picked is restarted on the port it got ([`InstanceSpec::listening_on`]).
//!
//! The instances of a stateful role are its shards: replica `n` runs with `--shard n`,
//! and every child gets the same `--shards` (each stateful role's replica count), so
//! all agree on where an entity lives. Flags win over a `--config` file, so the counts
//! always match what runs.
//!
//! Only built-in roles are started: a role from a file runs beside its application.
//! Every child gets the same `--roles-dir`, so all know the roles from files.

use std::ffi::OsString;

use super::replicas::{self, ReplicasError};
use crate::cli::DevArgs;
use svc_platform::manifest::{Manifest, RoleCatalog};

/// A public edge: users call it on a well-known port, so it needs a predictable one.
pub fn is_edge(manifest: &Manifest) -> bool {
    manifest.public
}

#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    #[error(transparent)]
    Replicas(#[from] ReplicasError),
    #[error("--registry-port must not be 0: every child is given the registry's address before it starts")]
    RegistryPortZero,
    #[error("--gateway-port {first}: {count} gateway instances do not fit below port 65536")]
    EdgePortOverflow { first: u16, count: usize },
    #[error(
        "--registry-port {port} is also one of the gateway ports (from --gateway-port {first})"
    )]
    PortCollision { port: u16, first: u16 },
    #[error("the role catalog must have exactly one role with `registers: false` (the registry), found {found}")]
    RegistryRole { found: usize },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstanceSpec {
    pub role: String,
    pub instance_id: String,
    /// 0 lets the OS pick; the child reports the bound address in its ready line.
    pub port: u16,
    /// Whether the instance must show up in the registry's catalog.
    pub registers: bool,
    pub edge: bool,
    /// Arguments after the executable, starting with `run`.
    pub args: Vec<OsString>,
}

#[derive(Debug)]
pub struct Plan {
    pub registry: InstanceSpec,
    pub others: Vec<InstanceSpec>,
    pub registry_url: String,
    /// The dev PKI (`<data-dir>/tls`) every child uses; `None` when the config says
    /// `tls.insecure`.
    pub tls_dir: Option<std::path::PathBuf>,
    /// The dev API key (`<data-dir>/api-key`, made on first run) and the file of its
    /// hash the gateways read (`<data-dir>/api-keys.yaml`).
    pub api_key_file: std::path::PathBuf,
    pub api_keys_file: std::path::PathBuf,
    /// Where the children's `--log-file`s go ([`logs_dir`]).
    pub logs_dir: std::path::PathBuf,
}

impl InstanceSpec {
    /// The same instance listening on `port`: how a child that the OS gave a port comes
    /// back after a restart, where its peers (and their persisted views) still look for
    /// it, registry or not.
    pub fn listening_on(&self, port: u16) -> InstanceSpec {
        let mut spec = self.clone();
        spec.port = port;
        if let Some(at) = spec.args.iter().position(|a| a == "--listen") {
            if let Some(value) = spec.args.get_mut(at + 1) {
                *value = format!("127.0.0.1:{port}").into();
            }
        }
        spec
    }
}

impl Plan {
    /// Every instance, the registry first, then in catalog order.
    pub fn all(&self) -> impl Iterator<Item = &InstanceSpec> {
        std::iter::once(&self.registry).chain(&self.others)
    }
}

/// The plan of `svc dev`; `insecure` is the config's `tls.insecure`.
pub fn build(args: &DevArgs, catalog: &RoleCatalog, insecure: bool) -> Result<Plan, PlanError> {
    let replicas = replicas::parse(&args.replicas, catalog)?;
    let registries = catalog.iter().filter(|m| m.is_registry()).count();
    if registries != 1 {
        return Err(PlanError::RegistryRole { found: registries });
    }
    if args.registry_port == 0 {
        return Err(PlanError::RegistryPortZero);
    }
    let scheme = if insecure { "http" } else { "https" };
    let registry_url = format!("{scheme}://127.0.0.1:{}", args.registry_port);
    let tls_dir = (!insecure).then(|| tls_dir(&args.data_dir));

    let edges: usize = catalog
        .iter()
        .filter(|m| is_edge(m))
        .map(|m| replicas.count(&m.name))
        .sum();
    let mut edge_ports = edge_ports(args, edges)?;
    let shards = catalog
        .iter()
        .filter(|m| m.is_sharded())
        .map(|m| format!("{}={}", m.name, replicas.count(&m.name)))
        .collect::<Vec<_>>()
        .join(",");

    let mut registry = None;
    let mut others = Vec::new();
    for manifest in catalog.iter() {
        for n in 0..replicas.count(&manifest.name) {
            let port = if manifest.is_registry() {
                args.registry_port
            } else if is_edge(manifest) {
                // edge_ports() yields exactly as many ports as there are edge instances.
                edge_ports.next().unwrap_or(0)
            } else {
                0
            };
            let spec = spec(args, manifest, n, port, &registry_url, &shards, &tls_dir);
            if manifest.is_registry() {
                registry = Some(spec);
            } else {
                others.push(spec);
            }
        }
    }
    let registry = registry.ok_or(PlanError::RegistryRole { found: 0 })?;
    Ok(Plan {
        registry,
        others,
        registry_url,
        tls_dir,
        api_key_file: args.data_dir.join("api-key"),
        api_keys_file: args.data_dir.join("api-keys.yaml"),
        logs_dir: logs_dir(&args.data_dir),
    })
}

/// Where every child of `svc dev --data-dir D` appends its JSON log lines: `D/logs`.
pub fn logs_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("logs")
}

/// Where `svc dev --data-dir D` keeps its CA and certificates: `D/tls`.
pub fn tls_dir(data_dir: &std::path::Path) -> std::path::PathBuf {
    data_dir.join("tls")
}

/// The ports of the edge instances: `--gateway-port` and up, or all 0 when it is 0.
fn edge_ports(args: &DevArgs, count: usize) -> Result<impl Iterator<Item = u16>, PlanError> {
    let first = args.gateway_port;
    let ports: Vec<u16> = if first == 0 {
        vec![0; count]
    } else {
        (0..count)
            .map(|n| u16::try_from(usize::from(first) + n).ok())
            .collect::<Option<_>>()
            .ok_or(PlanError::EdgePortOverflow { first, count })?
    };
    if ports.contains(&args.registry_port) {
        return Err(PlanError::PortCollision {
            port: args.registry_port,
            first,
        });
    }
    Ok(ports.into_iter())
}

fn spec(
    args: &DevArgs,
    manifest: &Manifest,
    n: usize,
    port: u16,
    registry_url: &str,
    shards: &str,
    tls_dir: &Option<std::path::PathBuf>,
) -> InstanceSpec {
    let instance_id = format!("{}-{n}", manifest.name);
    let log_format = args.log_format.name();
    let mut argv: Vec<OsString> = vec![
        "run".into(),
        "--role".into(),
        manifest.name.clone().into(),
        "--instance-id".into(),
        instance_id.clone().into(),
        "--listen".into(),
        format!("127.0.0.1:{port}").into(),
        "--data-dir".into(),
        args.data_dir.clone().into(),
        "--registry".into(),
        registry_url.into(),
        "--log-format".into(),
        log_format.into(),
        // JSON lines for `svc trace`, one file per instance, kept across restarts.
        "--log-file".into(),
        logs_dir(&args.data_dir)
            .join(format!("{instance_id}.jsonl"))
            .into(),
    ];
    if let Some(dir) = tls_dir {
        argv.push("--tls-dir".into());
        argv.push(dir.clone().into());
    }
    if is_edge(manifest) {
        argv.push("--api-keys-file".into());
        argv.push(args.data_dir.join("api-keys.yaml").into());
    }
    if let Some(config) = &args.config {
        argv.push("--config".into());
        argv.push(config.clone().into());
    }
    if let Some(dir) = &args.roles_dir {
        argv.push("--roles-dir".into());
        argv.push(dir.clone().into());
    }
    if !manifest.is_registry() {
        argv.push("--shards".into());
        argv.push(shards.into());
    }
    if manifest.is_sharded() {
        argv.push("--shard".into());
        argv.push(n.to_string().into());
    }
    InstanceSpec {
        role: manifest.name.clone(),
        instance_id,
        port,
        registers: manifest.registers,
        edge: is_edge(manifest),
        args: argv,
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::roles;
    use svc_platform::config::LogFormat;

    fn dev_args(replicas: &[&str]) -> DevArgs {
        DevArgs {
            replicas: replicas.iter().map(|s| s.to_string()).collect(),
            data_dir: PathBuf::from("data/dev"),
            config: None,
            registry_port: 7700,
            gateway_port: 8080,
            log_format: LogFormat::Json,
            roles_dir: None,
        }
    }

    fn ports_of(plan: &Plan, role: &str) -> Vec<u16> {
        plan.all()
            .filter(|s| s.role == role)
            .map(|s| s.port)
            .collect()
    }

    #[test]
    fn one_of_each_role_by_default() {
        let catalog = roles::built_in();
        let plan = build(&dev_args(&[]), &catalog, false).unwrap();
        assert_eq!(plan.all().count(), catalog.names().len());
        assert_eq!(plan.registry.port, 7700);
        assert_eq!(plan.registry_url, "https://127.0.0.1:7700");
        let insecure = build(&dev_args(&[]), &catalog, true).unwrap();
        assert_eq!(insecure.registry_url, "http://127.0.0.1:7700");
        assert_eq!(insecure.tls_dir, None);
        assert_eq!(ports_of(&plan, "gateway"), [8080]);
        assert_eq!(ports_of(&plan, "orders"), [0]);
        assert!(plan.others.iter().all(|s| s.registers));
    }

    #[test]
    fn gateways_take_consecutive_ports_and_ids() {
        let plan = build(&dev_args(&["gateway=3"]), &roles::built_in(), false).unwrap();
        assert_eq!(ports_of(&plan, "gateway"), [8080, 8081, 8082]);
        let ids: Vec<_> = plan
            .all()
            .filter(|s| s.role == "gateway")
            .map(|s| s.instance_id.as_str())
            .collect();
        assert_eq!(ids, ["gateway-0", "gateway-1", "gateway-2"]);
    }

    #[test]
    fn child_arguments_name_everything_svc_dev_decides() {
        let mut args = dev_args(&[]);
        args.config = Some(PathBuf::from("config/dev.yaml"));
        let plan = build(&args, &roles::built_in(), false).unwrap();
        let orders = plan.all().find(|s| s.role == "orders").unwrap();
        let argv: Vec<String> = orders
            .args
            .iter()
            .map(|a| a.to_string_lossy().into_owned())
            .collect();
        assert_eq!(
            argv.join(" "),
            "run --role orders --instance-id orders-0 --listen 127.0.0.1:0 --data-dir data/dev \
             --registry https://127.0.0.1:7700 --log-format json \
             --log-file data/dev/logs/orders-0.jsonl --tls-dir data/dev/tls --config config/dev.yaml \
             --shards orders=1,inventory=1,payments=1,notifications=1 --shard 0"
        );
    }

    #[test]
    fn port_problems_are_usage_errors() {
        let mut args = dev_args(&["gateway=2"]);
        args.registry_port = 8081;
        assert!(matches!(
            build(&args, &roles::built_in(), false),
            Err(PlanError::PortCollision { .. })
        ));
        let mut args = dev_args(&["gateway=2"]);
        args.gateway_port = 65535;
        assert!(matches!(
            build(&args, &roles::built_in(), false),
            Err(PlanError::EdgePortOverflow { .. })
        ));
        let mut args = dev_args(&[]);
        args.registry_port = 0;
        assert!(matches!(
            build(&args, &roles::built_in(), false),
            Err(PlanError::RegistryPortZero)
        ));
    }

    #[test]
    fn a_spec_listening_on_a_port_changes_only_its_listen_address() {
        let plan = build(&dev_args(&[]), &roles::built_in(), false).unwrap();
        let orders = plan.others.iter().find(|s| s.role == "orders").unwrap();
        let pinned = orders.listening_on(41234);
        assert_eq!(pinned.port, 41234);
        let listen = pinned.args.iter().position(|a| a == "--listen").unwrap();
        assert_eq!(pinned.args[listen + 1], "127.0.0.1:41234");
        let mut back = pinned.clone();
        back.args[listen + 1] = orders.args[listen + 1].clone();
        back.port = 0;
        assert_eq!(&back, orders, "nothing else changed");
    }

    #[test]
    fn gateway_port_zero_lets_the_os_pick() {
        let mut args = dev_args(&["gateway=2"]);
        args.gateway_port = 0;
        let plan = build(&args, &roles::built_in(), false).unwrap();
        assert_eq!(ports_of(&plan, "gateway"), [0, 0]);
    }
}
