//! `svc certs init` / `svc certs issue` as an operator runs them: files, modes, exit
//! codes, messages, and what the certificates say (read back with x509-parser, and with
//! the `openssl` tool too where it is installed).

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::SystemTime;

use crate::harness::*;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::CertificateDer;
use x509_parser::extensions::GeneralName;

const DAY: i64 = 24 * 60 * 60;

fn certs(args: &[&str], dir: &Path) -> Finished {
    let mut cmd = svc_command();
    cmd.arg("certs").args(args).arg("--dir").arg(dir);
    run_to_exit(cmd, EXIT_TIMEOUT)
}

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn leaf(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

/// Seconds from now to the certificate's not-after.
fn seconds_left(der: &[u8]) -> i64 {
    let (_, cert) = x509_parser::parse_x509_certificate(der).unwrap();
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    cert.validity().not_after.timestamp() - now.as_secs() as i64
}

fn assert_no_key_printed(out: &Finished) {
    assert!(
        !out.stdout.contains("PRIVATE KEY") && !out.stderr.contains("PRIVATE KEY"),
        "{out:?}"
    );
}

#[test]
fn init_writes_the_ca_refuses_a_second_init_and_force_replaces_it() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("pki");
    let (ca_crt, ca_key) = (dir.join("ca.crt"), dir.join("ca.key"));

    let out = certs(&["init"], &dir);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_eq!(
        (mode(&dir), mode(&ca_key), mode(&ca_crt)),
        (0o700, 0o600, 0o644)
    );
    assert!(
        out.stdout.contains(&ca_crt.display().to_string()),
        "{out:?}"
    );
    assert!(
        out.stdout.contains(&ca_key.display().to_string()),
        "{out:?}"
    );
    assert_no_key_printed(&out);
    let ca_der = leaf(&ca_crt);
    let (_, ca) = x509_parser::parse_x509_certificate(&ca_der).unwrap();
    assert!(ca.is_ca());

    let before = (fs::read(&ca_crt).unwrap(), fs::read(&ca_key).unwrap());
    let out = certs(&["init"], &dir);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr.contains(&ca_crt.display().to_string()),
        "{out:?}"
    );
    assert!(out.stderr.contains("--force"), "{out:?}");
    assert_eq!(
        (fs::read(&ca_crt).unwrap(), fs::read(&ca_key).unwrap()),
        before
    );

    let out = certs(&["init", "--force"], &dir);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert_ne!(fs::read(&ca_key).unwrap(), before.1);
    assert_ne!(fs::read(&ca_crt).unwrap(), before.0);
    assert_eq!(mode(&ca_key), 0o600);
}

#[test]
fn issue_writes_the_role_and_every_host() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert_eq!(certs(&["init"], dir).code(), Some(0));

    let args = [
        "issue",
        "--role",
        "orders",
        "--host",
        "vm1.example",
        "--host",
        "10.0.0.5,::1",
    ];
    let out = certs(&args, dir);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let (crt, key) = (dir.join("orders.crt"), dir.join("orders.key"));
    assert_eq!((mode(&key), mode(&crt)), (0o600, 0o644));
    for shown in [
        "orders.crt",
        "orders.key",
        "role:      orders",
        "DNS:vm1.example",
        "IP:::1",
        "not after:",
    ] {
        assert!(out.stdout.contains(shown), "no `{shown}` in {out:?}");
    }
    assert_no_key_printed(&out);

    let der = leaf(&crt);
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let names = &cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert!(
        names.contains(&GeneralName::URI("spiffe://svc/role/orders")),
        "{names:?}"
    );
    assert!(
        names.contains(&GeneralName::DNSName("vm1.example")),
        "{names:?}"
    );
    assert!(
        names.contains(&GeneralName::IPAddress(&[10, 0, 0, 5])),
        "{names:?}"
    );
    let loopback6 = std::net::Ipv6Addr::LOCALHOST.octets();
    assert!(
        names.contains(&GeneralName::IPAddress(&loopback6)),
        "{names:?}"
    );
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(
        (seconds_left(&der) - 90 * DAY).abs() < 120,
        "default 90 days"
    );
    openssl_shows(
        &crt,
        &[
            "URI:spiffe://svc/role/orders",
            "DNS:vm1.example",
            "IP Address:10.0.0.5",
        ],
    );

    let before = fs::read(&key).unwrap();
    let out = certs(&args, dir);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.contains(&crt.display().to_string()), "{out:?}");
    assert_eq!(fs::read(&key).unwrap(), before);
    let forced = [&args[..], &["--force"]].concat();
    assert_eq!(certs(&forced, dir).code(), Some(0));
    assert_ne!(fs::read(&key).unwrap(), before);
}

#[test]
fn valid_for_and_name_are_honoured_and_operator_needs_no_host() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert_eq!(certs(&["init"], dir).code(), Some(0));
    let args = [
        "issue",
        "--role",
        "operator",
        "--name",
        "alice",
        "--valid-for",
        "2d",
    ];
    let out = certs(&args, dir);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let der = leaf(&dir.join("alice.crt"));
    assert!(
        (seconds_left(&der) - 2 * DAY).abs() < 120,
        "{}",
        seconds_left(&der)
    );
    let (_, cert) = x509_parser::parse_x509_certificate(&der).unwrap();
    let names = &cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert_eq!(names, &[GeneralName::URI("spiffe://svc/role/operator")]);

    let out = certs(&["issue", "--role", "payments"], dir);
    assert_eq!(out.code(), Some(2), "a role needs --host: {out:?}");
    assert!(out.stderr.contains("--host"), "{out:?}");
    let out = certs(&["issue", "--role", "payments", "--host", "bad host!"], dir);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(!dir.join("payments.key").exists());
}

#[test]
fn issue_with_an_unknown_role_is_a_usage_error_listing_the_roles() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    assert_eq!(certs(&["init"], dir).code(), Some(0));
    let out = certs(&["issue", "--role", "billing", "--host", "localhost"], dir);
    assert_eq!(out.code(), Some(2), "{out:?}");
    for named in ["billing", "orders", "registry", "operator"] {
        assert!(out.stderr.contains(named), "no `{named}` in {out:?}");
    }
    assert!(!dir.join("billing.crt").exists() && !dir.join("billing.key").exists());
}

#[test]
fn issue_without_init_names_the_missing_ca_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let out = certs(&["issue", "--role", "orders", "--host", "localhost"], dir);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(
        out.stderr
            .contains(&dir.join("ca.crt").display().to_string()),
        "{out:?}"
    );
    assert!(out.stderr.contains("svc certs init"), "{out:?}");
    assert!(!dir.join("orders.key").exists());
}

/// Cross-checks with an independent X.509 reader when the `openssl` tool is installed
/// (svc itself never uses OpenSSL); skipped otherwise.
fn openssl_shows(cert: &Path, expected: &[&str]) {
    let Ok(out) = std::process::Command::new("openssl")
        .args(["x509", "-noout", "-text", "-in"])
        .arg(cert)
        .output()
    else {
        eprintln!("SKIPPED: no `openssl` on PATH, the cross-check with it");
        return;
    };
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "openssl x509: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    for want in expected {
        assert!(text.contains(want), "openssl shows no `{want}`:\n{text}");
    }
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
}
