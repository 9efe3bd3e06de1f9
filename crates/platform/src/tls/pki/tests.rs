//! Unit tests of the `pki` module.
use super::*;
use rustls::client::danger::ServerCertVerifier as _;
use rustls::pki_types::{ServerName, UnixTime};
use std::sync::Arc;
use x509_parser::extensions::GeneralName;

fn mode(path: &Path) -> u32 {
    fs::metadata(path).unwrap().permissions().mode() & 0o777
}

fn der(path: &Path) -> CertificateDer<'static> {
    CertificateDer::from_pem_file(path).unwrap()
}

fn secs_from_now(t: i64) -> i64 {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap();
    t - now.as_secs() as i64
}

#[test]
fn init_ca_makes_a_private_key_and_a_ca_certificate() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("new/pki");
    let cert_path = init_ca(&dir, false).unwrap();
    assert_eq!(cert_path, dir.join(CA_CERT));
    assert_eq!(mode(&dir), 0o700);
    assert_eq!(mode(&dir.join(CA_KEY)), 0o600);
    assert_eq!(mode(&cert_path), 0o644);
    let der = der(&cert_path);
    let (_, ca) = x509_parser::parse_x509_certificate(&der).unwrap();
    assert!(ca.is_ca());
    assert_eq!(ca.subject().to_string(), "CN=svc cluster CA");
    let usage = ca.key_usage().unwrap().unwrap().value;
    assert!(usage.key_cert_sign() && usage.crl_sign());
    let left = secs_from_now(ca.validity().not_after.timestamp());
    assert!(left.abs_diff(CA_VALIDITY.as_secs() as i64) < 60);
}

#[test]
fn init_ca_refuses_to_replace_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_ca(dir, false).unwrap();
    let before = fs::read(dir.join(CA_KEY)).unwrap();
    let err = init_ca(dir, false).unwrap_err();
    assert!(matches!(err, PkiError::Exists { .. }), "{err}");
    assert!(err.to_string().contains(CA_CERT), "{err}");
    assert_eq!(fs::read(dir.join(CA_KEY)).unwrap(), before);
    fs::remove_file(dir.join(CA_CERT)).unwrap();
    let err = init_ca(dir, false).unwrap_err();
    assert!(
        err.to_string().contains(CA_KEY),
        "a lone key is kept too: {err}"
    );
    init_ca(dir, true).unwrap();
    assert_ne!(fs::read(dir.join(CA_KEY)).unwrap(), before);
    assert_eq!(mode(&dir.join(CA_KEY)), 0o600);
}

#[test]
fn issue_names_the_role_and_hosts_and_chains_to_the_ca() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_ca(dir, false).unwrap();
    let mut req = IssueRequest::new("orders", &["vm1.example", "10.0.0.5", "::1"]);
    req.name = "orders-1".to_string();
    req.valid_for = Duration::from_secs(3 * DAY);
    let (cert_path, key_path) = issue(dir, &req).unwrap();
    assert_eq!(cert_path, cert_file(dir, "orders-1"));
    assert_eq!(key_path, key_file(dir, "orders-1"));
    assert_eq!((mode(&key_path), mode(&cert_path)), (0o600, 0o644));
    let pem = fs::read(&cert_path).unwrap();
    assert_eq!(
        CertificateDer::pem_slice_iter(&pem).count(),
        1,
        "the leaf alone"
    );

    let leaf = der(&cert_path);
    let (_, cert) = x509_parser::parse_x509_certificate(&leaf).unwrap();
    assert_eq!(cert.subject().to_string(), "CN=orders");
    let names = &cert
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names;
    assert!(names.contains(&GeneralName::URI("spiffe://svc/role/orders")));
    assert!(names.contains(&GeneralName::DNSName("vm1.example")));
    assert!(names.contains(&GeneralName::IPAddress(&[10, 0, 0, 5])));
    let eku = cert.extended_key_usage().unwrap().unwrap().value;
    assert!(eku.server_auth && eku.client_auth);
    assert!(!cert.is_ca());
    let started = secs_from_now(cert.validity().not_before.timestamp());
    assert!(
        started.abs_diff(-(CLOCK_SKEW.as_secs() as i64)) < 60,
        "{started}"
    );
    let left = secs_from_now(cert.validity().not_after.timestamp());
    assert!(left.abs_diff(3 * DAY as i64) < 60, "{left}");

    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der(&dir.join(CA_CERT))).unwrap();
    let roots = Arc::new(roots);
    let servers = rustls::client::WebPkiServerVerifier::builder_with_provider(
        roots.clone(),
        provider.clone(),
    )
    .build()
    .unwrap();
    let now = UnixTime::now();
    for host in ["vm1.example", "10.0.0.5", "::1"] {
        let name = ServerName::try_from(host).unwrap();
        servers
            .verify_server_cert(&leaf, &[], &name, &[], now)
            .unwrap();
    }
    let other = ServerName::try_from("vm2.example").unwrap();
    assert!(servers
        .verify_server_cert(&leaf, &[], &other, &[], now)
        .is_err());
    let clients = rustls::server::WebPkiClientVerifier::builder_with_provider(roots, provider)
        .build()
        .unwrap();
    clients.verify_client_cert(&leaf, &[], now).unwrap();
}

#[test]
fn issue_refuses_to_replace_unless_forced() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_ca(dir, false).unwrap();
    let mut req = IssueRequest::new("payments", &["localhost"]);
    let (cert_path, key_path) = issue(dir, &req).unwrap();
    let read_both = || (fs::read(&cert_path).unwrap(), fs::read(&key_path).unwrap());
    let before = read_both();
    let err = issue(dir, &req).unwrap_err();
    assert!(err.to_string().contains("payments.crt"), "{err}");
    assert_eq!(read_both(), before);
    req.force = true;
    issue(dir, &req).unwrap();
    assert_ne!(read_both().1, before.1);
    assert_eq!(mode(&key_path), 0o600);
}

#[test]
fn issue_without_a_ca_names_the_missing_file() {
    let tmp = tempfile::tempdir().unwrap();
    let err = issue(tmp.path(), &IssueRequest::new("orders", &[])).unwrap_err();
    assert!(matches!(err, PkiError::NoCa { .. }), "{err}");
    let ca = tmp.path().join(CA_CERT).display().to_string();
    assert!(err.to_string().contains(&ca), "{err}");
    assert!(!cert_file(tmp.path(), "orders").exists());
}

#[test]
fn bad_requests_are_refused_before_anything_is_written() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    init_ca(dir, false).unwrap();
    let base = IssueRequest::new("orders", &["localhost"]);
    let requests = [
        IssueRequest {
            role: "Orders".into(),
            ..base.clone()
        },
        IssueRequest {
            name: "../x".into(),
            ..base.clone()
        },
        IssueRequest {
            name: "ca".into(),
            ..base.clone()
        },
        IssueRequest {
            name: "a".repeat(64),
            ..base.clone()
        },
        IssueRequest {
            hosts: vec!["bad host".into()],
            ..base.clone()
        },
        IssueRequest {
            hosts: vec!["*.example".into()],
            ..base.clone()
        },
        IssueRequest {
            valid_for: Duration::ZERO,
            ..base.clone()
        },
    ];
    for req in requests {
        let err = issue(dir, &req).unwrap_err();
        assert!(matches!(err, PkiError::BadRequest { .. }), "{req:?}: {err}");
    }
    assert_eq!(fs::read_dir(dir).unwrap().count(), 2, "only the CA files");
}

#[test]
fn ensure_dev_pki_is_idempotent_and_renews_what_expires() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("tls");
    let roles = ["registry", "orders"];
    ensure_dev_pki(&dir, &roles).unwrap();
    let snapshot = || {
        let mut files: Vec<_> = fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .map(|p| (fs::read(&p).unwrap(), p))
            .collect();
        files.sort_by(|a, b| a.1.cmp(&b.1));
        files
    };
    let first = snapshot();
    assert_eq!(first.len(), 2 + 2 * 3, "CA, registry, orders, operator");
    let operator = der(&cert_file(&dir, OPERATOR));
    assert_eq!(identity::role_of(&operator).as_deref(), Some(OPERATOR));
    ensure_dev_pki(&dir, &roles).unwrap();
    assert_eq!(snapshot(), first, "a second call changes nothing");

    let ca_key = fs::read(dir.join(CA_KEY)).unwrap();
    let mut short = IssueRequest::new("orders", &["localhost"]);
    (short.valid_for, short.force) = (Duration::from_secs(DAY), true);
    issue(&dir, &short).unwrap();
    ensure_dev_pki(&dir, &roles).unwrap();
    let renewed = identity::not_after(&der(&cert_file(&dir, "orders"))).unwrap();
    assert!(renewed > SystemTime::now() + DEV_VALIDITY - Duration::from_secs(60));
    assert_eq!(
        fs::read(dir.join(CA_KEY)).unwrap(),
        ca_key,
        "the CA is kept"
    );

    let stranger = tmp.path().join("other");
    init_ca(&stranger, false).unwrap();
    fs::copy(stranger.join(CA_CERT), dir.join(CA_CERT)).unwrap();
    fs::copy(stranger.join(CA_KEY), dir.join(CA_KEY)).unwrap();
    ensure_dev_pki(&dir, &roles).unwrap();
    let registry = fs::read(cert_file(&dir, "registry")).unwrap();
    let old_registry = &first
        .iter()
        .find(|f| f.1.ends_with("registry.crt"))
        .unwrap()
        .0;
    assert_ne!(&registry, old_registry, "reissued under the new CA");
    assert_eq!(snapshot().len(), first.len());
}
