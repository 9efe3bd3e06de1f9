//! The flags of `svc certs` (the cluster's mutual-TLS certificates) and `svc keys` (API
//! keys of the public API): what an operator makes credentials with.

use std::path::PathBuf;

use clap::{Args, Subcommand};

use super::CatalogArgs;

#[derive(Debug, Subcommand)]
pub enum KeysCommand {
    /// Make a new random API key: prints the key (once; it is stored nowhere) and the
    /// entry holding its SHA-256 to paste into `gateway.api_keys` or the
    /// `gateway.api_keys_file`.
    #[command(
        after_help = "Scopes: products:read, products:write, orders:read, orders:write.\n\nExamples:\n  svc keys new --name shop --scopes orders:read,orders:write,products:read\n  svc keys new --name bulk-import --scopes products:write --rate-per-second 100 --burst 200"
    )]
    New(KeysNewArgs),
}

#[derive(Debug, Args, Clone)]
pub struct KeysNewArgs {
    /// Who gets the key (1 to 64 of A-Z a-z 0-9 - _ .); the name logs show.
    #[arg(long)]
    pub name: String,
    /// Scopes the key grants, comma separated.
    #[arg(long, value_delimiter = ',', required = true)]
    pub scopes: Vec<String>,
    /// This key's own rate (default: gateway.rate_limit.per_second).
    #[arg(long)]
    pub rate_per_second: Option<f64>,
    /// This key's own burst (default: gateway.rate_limit.burst).
    #[arg(long)]
    pub burst: Option<u32>,
}

#[derive(Debug, Subcommand)]
pub enum CertsCommand {
    /// Create the cluster CA in DIR: ca.crt (every instance trusts it) and ca.key (signs
    /// certificates; keep it where you issue them, never on the instances).
    #[command(
        after_help = "Writes DIR/ca.crt (0644) and DIR/ca.key (0600); creates DIR (0700) if missing.\nAn ECDSA P-256 CA valid for 10 years. Refuses to replace an existing CA unless\n--force: every certificate it issued stops being trusted.\n\nExample:\n  svc certs init --dir /etc/svc/tls"
    )]
    Init(CertsInitArgs),
    /// Issue DIR/NAME.crt and DIR/NAME.key for one role (or `operator`, for people and
    /// tools such as `svc status`), signed by the CA in DIR.
    #[command(
        after_help = "The certificate names the role as URI spiffe://svc/role/ROLE (what peers check)\nand each --host as a DNS name or IP address (what callers connect to); it serves\nand calls (server and client auth). Copy ca.crt, NAME.crt and NAME.key to the\ninstance's tls.dir.\n\nExamples:\n  svc certs issue --role orders --host vm1.example --host 10.0.0.5 --dir /etc/svc/tls\n  svc certs issue --role orders --name orders-1 --host vm2.example,10.0.0.6 --dir /etc/svc/tls\n  svc certs issue --role operator --valid-for 30d --dir /etc/svc/tls\n  svc certs issue --role loyalty --host vm3.example --dir /etc/svc/tls --roles-dir /etc/svc/roles"
    )]
    Issue(CertsIssueArgs),
}

#[derive(Debug, Args, Clone)]
pub struct CertsInitArgs {
    /// Directory of the PKI (created if missing).
    #[arg(long)]
    pub dir: PathBuf,
    /// Replace an existing CA.
    #[arg(long)]
    pub force: bool,
}

#[derive(Debug, Args, Clone)]
pub struct CertsIssueArgs {
    /// Role the certificate speaks for (see `svc roles`), or `operator`.
    #[arg(long)]
    pub role: String,
    /// DNS name or IP address the instance is reached at; repeat it or separate by
    /// commas. Required for roles, optional for `operator`.
    #[arg(long = "host", value_delimiter = ',')]
    pub hosts: Vec<String>,
    /// File name of the certificate and key, without extension. Default: the role.
    #[arg(long)]
    pub name: Option<String>,
    /// How long the certificate is valid (humantime, e.g. 90d, 12h).
    #[arg(long, default_value = "90d", value_parser = humantime::parse_duration)]
    pub valid_for: std::time::Duration,
    /// Directory of the PKI: holds ca.crt and ca.key, receives NAME.crt and NAME.key.
    #[arg(long)]
    pub dir: PathBuf,
    /// Replace an existing certificate and key of that name.
    #[arg(long)]
    pub force: bool,
    /// Where roles from files are (for a role that is not built in).
    #[command(flatten)]
    pub catalog: CatalogArgs,
}
