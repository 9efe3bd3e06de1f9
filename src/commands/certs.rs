//! `svc certs`: make the cluster CA (`init`) and issue instance and operator
//! certificates (`issue`) for mutual TLS, with [`svc_platform::tls::pki`].
//!
//! Guarantees: a role must be one of the catalog's (built in, or from a file of
//! `--roles-dir` / the `--config`'s `roles.dir`), or `operator`; a bad request (role,
//! name, host, validity) exits 2 before anything is written; a refused or failed write
//! exits 1 with the file named. What was written is printed — paths, role, names,
//! end of validity — and a private key never is.

use std::path::Path;
use std::process::ExitCode;

use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;

use super::{fail, load_catalog, EXIT_FAILURE, EXIT_USAGE};
use crate::cli::{CertsCommand, CertsInitArgs, CertsIssueArgs};
use svc_platform::tls::identity;
use svc_platform::tls::pki::{self, IssueRequest, PkiError};

pub fn run(command: CertsCommand) -> ExitCode {
    match command {
        CertsCommand::Init(args) => init(&args),
        CertsCommand::Issue(args) => issue(args),
    }
}

fn init(args: &CertsInitArgs) -> ExitCode {
    match pki::init_ca(&args.dir, args.force) {
        Ok(cert) => {
            println!(
                "wrote {}  (CA certificate: give it to every instance)",
                cert.display()
            );
            println!(
                "wrote {}  (CA private key, 0600: keep it here, off the instances)",
                args.dir.join(pki::CA_KEY).display()
            );
            print_certificate(&cert);
            ExitCode::SUCCESS
        }
        Err(e) => fail_with(e),
    }
}

fn issue(args: CertsIssueArgs) -> ExitCode {
    let catalog = match load_catalog(&args.catalog) {
        Ok(catalog) => catalog,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    if args.role != pki::OPERATOR && catalog.get(&args.role).is_none() {
        let mut valid = catalog.names();
        valid.push(pki::OPERATOR);
        let valid = valid.join(", ");
        return fail(
            EXIT_USAGE,
            format!("unknown role `{}`; valid roles: {valid}", args.role),
        );
    }
    let hosts: Vec<String> = args
        .hosts
        .iter()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .collect();
    if hosts.is_empty() && args.role != pki::OPERATOR {
        return fail(
            EXIT_USAGE,
            format!(
                "--host is required for role `{}`: the DNS names or IP addresses its callers connect to",
                args.role
            ),
        );
    }
    let request = IssueRequest {
        name: args.name.unwrap_or_else(|| args.role.clone()),
        role: args.role,
        hosts,
        valid_for: args.valid_for,
        force: args.force,
    };
    match pki::issue(&args.dir, &request) {
        Ok((cert, key)) => {
            println!("wrote {}  (certificate)", cert.display());
            println!("wrote {}  (private key, 0600)", key.display());
            print_certificate(&cert);
            ExitCode::SUCCESS
        }
        Err(e) => fail_with(e),
    }
}

/// The role, names and end of validity of the certificate just written, read back.
fn print_certificate(path: &Path) {
    let Ok(der) = CertificateDer::from_pem_file(path) else {
        return;
    };
    if let Some(role) = identity::role_of(&der) {
        println!("role:      {role}");
    }
    let names = identity::alt_names(&der);
    if !names.is_empty() {
        println!("names:     {}", names.join(", "));
    }
    if let Some(end) = identity::not_after(&der) {
        println!("not after: {}", humantime::format_rfc3339_seconds(end));
    }
}

fn fail_with(error: PkiError) -> ExitCode {
    let code = match error {
        PkiError::BadRequest { .. } => EXIT_USAGE,
        _ => EXIT_FAILURE,
    };
    fail(code, error)
}
