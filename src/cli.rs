//! The command line: every subcommand and flag, with the help text users read.
//!
//! Flags of `svc run` also read `SVC_*` environment variables; a flag given on the
//! command line wins over the variable, which wins over the config file.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

use svc_platform::config::LogFormat;

mod credentials;
pub use credentials::{CertsCommand, CertsInitArgs, CertsIssueArgs, KeysCommand, KeysNewArgs};

#[derive(Debug, Parser)]
#[command(
    name = "svc",
    version,
    about = "One executable that runs any role of an order-processing backend split into microservices.",
    after_help = "Examples:\n  svc dev                                   # the whole system on this machine\n  svc run --role orders --registry https://10.0.0.2:7700 --tls-dir /etc/svc/tls\n  svc status --registry https://10.0.0.2:7700 --tls-dir /etc/svc/tls\n  svc certs issue --role orders --host vm1.example --dir /etc/svc/tls\n  svc ui                                    # the registry's page, at http://127.0.0.1:7780/ui\n  svc trace 4bf92f3577b34da6a3ce929d0e0e4736   # one request across every service\n  svc roles\n  svc config check --config /etc/svc/svc.yaml"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run one instance of one role (what a systemd unit starts).
    #[command(
        after_help = "Examples:\n  svc run --role registry --listen 0.0.0.0:7700 --data-dir /var/lib/svc/registry\n  svc run --role orders --config /etc/svc/svc.yaml --instance-id orders-0\n  svc run --role orders --instance-id orders-1 --shard 1 --shards orders=2\n  SVC_REGISTRY=https://10.0.0.2:7700,https://10.0.0.3:7700 svc run --role gateway"
    )]
    Run(RunArgs),
    /// Run the whole system on this machine: a registry and every role, as child processes.
    #[command(
        after_help = "The registry listens on 127.0.0.1:7700 and the gateway on 127.0.0.1:8080\n(then 8081, ... for more gateways); other roles take free ports.\n\nExamples:\n  svc dev\n  svc dev --replicas gateway=2,orders=1 --data-dir /tmp/svc-dev\n  svc dev --replicas gateway=2,orders=2,inventory=2,payments=2   # 2 shards each"
    )]
    Dev(DevArgs),
    /// Show every role's instances: shard, health, lease, and live request rate, 5xx count
    /// and p99 latency from each instance's /metrics.
    #[command(
        after_help = "Requests/s and p99 come from two scrapes of each instance's /metrics, --window\napart (probes and scrapes, svc status's own included, are left out); 5XX counts\nsince the instance started.\n\nExamples:\n  svc status\n  svc status --registry https://10.0.0.2:7700,https://10.0.0.3:7700 --tls-dir /etc/svc/tls --identity orders\n  svc status --json --window 5s"
    )]
    Status(StatusArgs),
    /// Open the registry's /ui page in a browser: a local, read-only proxy that presents
    /// the operator's certificate to the registry (which a browser cannot).
    #[command(
        after_help = "Serves plain HTTP, only GET /ui and GET /v1/catalog, forwarded to the first\nregistry that answers. Keep it on loopback: whoever reaches it sees the catalog.\n\nExamples:\n  svc ui                                    # then open http://127.0.0.1:7780/ui\n  svc ui --registry https://10.0.0.2:7700,https://10.0.0.3:7700 --tls-dir /etc/svc/tls\n  svc ui --listen 127.0.0.1:0               # any free port; the address is printed"
    )]
    Ui(UiArgs),
    /// Print the log lines of one trace from every instance's JSON log file, as a tree of
    /// calls in time order.
    #[command(
        after_help = "The id is the trace id (what x-request-id echoes), a traceparent, or a request id\nthe client chose. Log files: what --log-file / log_file writes; svc dev writes\n<data-dir>/logs/<instance>.jsonl.\n\nExamples:\n  svc trace 0af7651916cd43dd8448eb211c80319c\n  svc trace 0af7651916cd43dd8448eb211c80319c --logs /tmp/collected --flat"
    )]
    Trace(TraceArgs),
    /// List the roles and their manifests: the built-in ones, and the roles from files
    /// of `roles.dir`, with every endpoint's callers (`+`: added by roles.extra_callers).
    #[command(
        after_help = "Examples:\n  svc roles\n  svc roles --config /etc/svc/svc.yaml\n  svc roles --roles-dir /etc/svc/roles"
    )]
    Roles(CatalogArgs),
    /// Place orders through a gateway at a fixed concurrency and report throughput,
    /// latency, and per role the CPU time and syncs each confirmed order cost.
    #[command(
        after_help = "Every instance in the registry's catalog, and every registry, is scraped (/metrics,\nwith the operator's certificate) before and after the run: CPU MS/ORDER is the\nrole's process CPU time (user + system) per confirmed order, SYNCS/ORDER its durable\ncommits (one fdatasync each), COMMANDS/COMMIT its store commands per commit; `-`\nwhen an instance does not export the counter. The orders buy the products\nzz-bench-00 to zz-bench-15, made by the first run and reused by every later one.\n\nStart the system first (`svc dev`), then:\n  svc bench --concurrency 16 --duration 20s\n  svc bench --gateway http://10.0.0.7:8080 --registry https://10.0.0.2:7700 --tls-dir /etc/svc/tls --concurrency 64"
    )]
    Bench(BenchArgs),
    /// Work with configuration files.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Make the cluster's mutual-TLS certificates: the CA, then one certificate per
    /// instance (and one for operators), each naming its role.
    #[command(subcommand)]
    Certs(CertsCommand),
    /// Make API keys for the public API (`gateway.api_keys`).
    #[command(subcommand)]
    Keys(KeysCommand),
    /// Print the shell completion script for SHELL (scripts/install.sh installs them).
    #[command(
        after_help = "Examples:\n  source <(svc completions bash)\n  svc completions zsh > ~/.zfunc/_svc\n  svc completions fish > ~/.config/fish/completions/svc.fish"
    )]
    Completions { shell: clap_complete::Shell },
    /// Print the manual page svc(1), or with --dir write one page per command there.
    #[command(
        after_help = "Examples:\n  svc man | man -l -\n  svc man --dir /usr/local/share/man/man1   # svc.1, svc-run.1, svc-certs-issue.1, ..."
    )]
    Man {
        /// Write svc.1 and one page per subcommand (svc-run.1, ...) into this directory.
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Debug, Args, Clone)]
pub struct RunArgs {
    /// Role to run (see `svc roles`).
    #[arg(long, env = "SVC_ROLE")]
    pub role: String,
    /// YAML config file; without one, the documented defaults apply.
    #[arg(long, env = "SVC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Address to bind, e.g. 0.0.0.0:7700. Port 0 picks a free port (registered as bound).
    #[arg(long, env = "SVC_LISTEN")]
    pub listen: Option<SocketAddr>,
    /// Directory for this instance's redb file.
    #[arg(long, env = "SVC_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Registry URLs, comma separated; the instance registers at every one.
    #[arg(long = "registry", env = "SVC_REGISTRY", value_delimiter = ',')]
    pub registries: Option<Vec<String>>,
    /// Stable instance name (names the redb file). Default: the host name.
    #[arg(long, env = "SVC_INSTANCE_ID")]
    pub instance_id: Option<String>,
    /// Log line format on stderr.
    #[arg(long, env = "SVC_LOG_FORMAT", value_parser = log_format_parser())]
    pub log_format: Option<LogFormat>,
    /// Also append every log line as JSON to this file (read by `svc trace`).
    #[arg(long, env = "SVC_LOG_FILE")]
    pub log_file: Option<PathBuf>,
    /// Shard of its role this instance owns (stateful roles); below its role's --shards.
    #[arg(long, env = "SVC_SHARD")]
    pub shard: Option<u32>,
    /// Shards per stateful role, comma separated, e.g. `orders=2,inventory=2`; the same on
    /// every instance. Roles not named keep the config file's count (default 1).
    #[arg(long, env = "SVC_SHARDS", value_delimiter = ',')]
    pub shards: Option<Vec<String>>,
    /// Directory with ca.crt and <role>.crt / <role>.key for mutual TLS (see `svc certs`).
    #[arg(long, env = "SVC_TLS_DIR")]
    pub tls_dir: Option<PathBuf>,
    /// YAML file of hashed API keys the gateway accepts (see `svc keys new`); replaces
    /// gateway.api_keys_file.
    #[arg(long, env = "SVC_API_KEYS_FILE")]
    pub api_keys_file: Option<PathBuf>,
    /// Directory of role manifests (`<role>.yaml`) of roles svc does not contain (see
    /// `svc roles`); replaces roles.dir.
    #[arg(long, env = "SVC_ROLES_DIR")]
    pub roles_dir: Option<PathBuf>,
    /// For a role from a file: run as the sidecar of its application at this URL
    /// (`http://127.0.0.1:<port>`); replaces app.url.
    #[arg(long, env = "SVC_APP")]
    pub app: Option<String>,
}

/// Which catalog an operator's command reads: the built-in roles and the roles from
/// files of the config's `roles.dir` (or `--roles-dir`).
#[derive(Debug, Args, Clone, Default)]
pub struct CatalogArgs {
    /// YAML config file whose `roles` section (`dir`, `extra_callers`) applies.
    #[arg(long, env = "SVC_CONFIG")]
    pub config: Option<PathBuf>,
    /// Directory of role manifests of roles svc does not contain; replaces roles.dir.
    #[arg(long, env = "SVC_ROLES_DIR")]
    pub roles_dir: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct DevArgs {
    /// Instances per role, e.g. `gateway=2,orders=1` (default: one of each). Instances of
    /// a stateful role are its shards: `orders=2` runs shards 0 and 1.
    #[arg(long, value_delimiter = ',')]
    pub replicas: Vec<String>,
    /// Directory for every instance's redb file.
    #[arg(long, default_value = "data/dev")]
    pub data_dir: PathBuf,
    /// Config file passed to every child (ports and data dir are set by `svc dev`).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Registry port.
    #[arg(long, default_value_t = 7700)]
    pub registry_port: u16,
    /// Port of the first gateway; further gateways take the next ports.
    #[arg(long, default_value_t = 8080)]
    pub gateway_port: u16,
    /// Log format of the children.
    #[arg(long, value_parser = log_format_parser(), default_value = "pretty")]
    pub log_format: LogFormat,
    /// Directory of role manifests of roles svc does not contain, passed to every
    /// child. Default: the config's roles.dir, else `roles.d/` next to --config.
    #[arg(long)]
    pub roles_dir: Option<PathBuf>,
}

#[derive(Debug, Args, Clone)]
pub struct StatusArgs {
    /// Registry URLs, comma separated; the first that answers is used.
    #[arg(
        long = "registry",
        env = "SVC_REGISTRY",
        value_delimiter = ',',
        default_value = "https://127.0.0.1:7700"
    )]
    pub registries: Vec<String>,
    #[command(flatten)]
    pub identity: IdentityArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
    /// Time between the two /metrics scrapes that give requests/s and p99 (humantime).
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub window: std::time::Duration,
}

#[derive(Debug, Args, Clone)]
pub struct UiArgs {
    /// Registry URLs, comma separated; each request goes to the first that answers.
    #[arg(
        long = "registry",
        env = "SVC_REGISTRY",
        value_delimiter = ',',
        default_value = "https://127.0.0.1:7700"
    )]
    pub registries: Vec<String>,
    /// Address to serve the page on (plain HTTP). Port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:7780")]
    pub listen: SocketAddr,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

/// Who an operator's tool is when it talks to the cluster (mutual TLS).
#[derive(Debug, Args, Clone)]
pub struct IdentityArgs {
    /// Directory with ca.crt and the certificate of --identity; the default is where
    /// `svc dev` keeps its own.
    #[arg(long, env = "SVC_TLS_DIR", default_value = "data/dev/tls")]
    pub tls_dir: PathBuf,
    /// Whose certificate to present: `operator`, or the role of a certificate on this
    /// host (every cluster identity may read the catalog, health and metrics).
    #[arg(long, default_value = "operator")]
    pub identity: String,
    /// Plain HTTP, for a cluster running with `tls.insecure`.
    #[arg(long)]
    pub insecure: bool,
}

#[derive(Debug, Args, Clone)]
pub struct TraceArgs {
    /// Trace id (32 hex digits), traceparent, or request id.
    pub id: String,
    /// Directory of JSON log files (*.jsonl, searched recursively).
    #[arg(long, default_value = "data/dev/logs")]
    pub logs: PathBuf,
    /// One line per log line in time order, instead of the tree.
    #[arg(long)]
    pub flat: bool,
}

#[derive(Debug, Args, Clone)]
pub struct BenchArgs {
    /// Gateway base URL.
    #[arg(long, default_value = "http://127.0.0.1:8080")]
    pub gateway: String,
    /// Orders in flight at any time.
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
    /// How long to place orders (humantime, e.g. 10s).
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub duration: std::time::Duration,
    /// API key with products:write and orders:write (default: what `svc dev` made in
    /// --api-key-file).
    #[arg(long, env = "SVC_API_KEY")]
    pub api_key: Option<String>,
    /// File holding the API key when --api-key is not given.
    #[arg(long, default_value = "data/dev/api-key")]
    pub api_key_file: PathBuf,
    /// Registry URLs, comma separated: the catalog of the instances whose /metrics are
    /// scraped before and after the run (the first that answers), and the registries
    /// themselves.
    #[arg(
        long = "registry",
        env = "SVC_REGISTRY",
        value_delimiter = ',',
        default_value = "https://127.0.0.1:7700"
    )]
    pub registries: Vec<String>,
    #[command(flatten)]
    pub identity: IdentityArgs,
}

#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate a config file: exit 0 if valid, else print file, key and reason and exit 2.
    #[command(after_help = "Example:\n  svc config check --config config/vm-example.yaml")]
    Check {
        #[arg(long, env = "SVC_CONFIG")]
        config: PathBuf,
    },
}

/// `--log-format`: the platform's [`LogFormat`], with its names listed in `--help`.
fn log_format_parser() -> impl clap::builder::TypedValueParser<Value = LogFormat> {
    use clap::builder::TypedValueParser as _;
    clap::builder::PossibleValuesParser::new(LogFormat::NAMES)
        .map(|name| name.parse::<LogFormat>().expect("a listed name parses"))
}
