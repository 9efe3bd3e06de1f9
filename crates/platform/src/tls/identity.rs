//! Who a certificate speaks for: the svc role named in its URI SAN
//! `spiffe://svc/role/<role>`, and until when it is valid.
//!
//! Guarantees: these functions read untrusted bytes (a peer's certificate) and never
//! panic on them; anything that is not a well-formed certificate, or names no role, or
//! names one outside `[a-z][a-z0-9-]*` (at most 63 characters), gives `None`. They only
//! read: whether the certificate chains to the cluster CA is the TLS verifier's job.

use std::net::IpAddr;
use std::time::{Duration, SystemTime};

use x509_parser::certificate::X509Certificate;
use x509_parser::extensions::GeneralName;

/// The URI SAN prefix of an svc identity; the role follows it.
const SPIFFE_PREFIX: &str = "spiffe://svc/role/";

/// The longest role or file name accepted (a DNS label's limit).
pub(crate) const MAX_NAME_LEN: usize = 63;

/// Whether `name` is a valid role or file stem: `[a-z][a-z0-9-]*`, at most 63 characters.
pub(crate) fn is_valid_name(name: &str) -> bool {
    let mut chars = name.chars();
    let Some(first) = chars.next() else {
        return false;
    };
    name.len() <= MAX_NAME_LEN
        && first.is_ascii_lowercase()
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
}

/// The URI SAN that names `role`.
pub(crate) fn spiffe_id(role: &str) -> String {
    format!("{SPIFFE_PREFIX}{role}")
}

/// The role a DER certificate names in its first `spiffe://svc/role/` URI SAN.
pub fn role_of(cert_der: &[u8]) -> Option<String> {
    let cert = parse(cert_der)?;
    let san = cert.subject_alternative_name().ok()??;
    let role = san.value.general_names.iter().find_map(|name| match name {
        GeneralName::URI(uri) => uri.strip_prefix(SPIFFE_PREFIX),
        _ => None,
    })?;
    is_valid_name(role).then(|| role.to_string())
}

/// The end of a DER certificate's validity (`None` if it does not parse, or lies before
/// 1970).
pub fn not_after(cert_der: &[u8]) -> Option<SystemTime> {
    let cert = parse(cert_der)?;
    let seconds = u64::try_from(cert.validity().not_after.timestamp()).ok()?;
    SystemTime::UNIX_EPOCH.checked_add(Duration::from_secs(seconds))
}

/// A certificate's subject alternative names as `URI:…`, `DNS:…`, `IP:…`, for people
/// (empty if it does not parse or has none).
pub fn alt_names(cert_der: &[u8]) -> Vec<String> {
    map_alt_names(cert_der, |name| {
        Some(match name {
            GeneralName::URI(uri) => format!("URI:{uri}"),
            GeneralName::DNSName(dns) => format!("DNS:{dns}"),
            GeneralName::IPAddress(bytes) => match ip_from(bytes) {
                Some(ip) => format!("IP:{ip}"),
                None => "IP:?".to_string(),
            },
            other => format!("{other:?}"),
        })
    })
}

/// The hosts a DER certificate is for: its DNS names (lower case) and IP addresses.
pub(crate) fn hosts_of(cert_der: &[u8]) -> Vec<String> {
    map_alt_names(cert_der, |name| match name {
        GeneralName::DNSName(dns) => Some(dns.to_ascii_lowercase()),
        GeneralName::IPAddress(bytes) => ip_from(bytes).map(|ip| ip.to_string()),
        _ => None,
    })
}

/// `f` of each subject alternative name it keeps (empty if the certificate does not
/// parse or has none).
fn map_alt_names<T>(cert_der: &[u8], f: impl Fn(&GeneralName) -> Option<T>) -> Vec<T> {
    let Some(cert) = parse(cert_der) else {
        return Vec::new();
    };
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value.general_names.iter().filter_map(f).collect()
}

/// Whether `host` (a name or an IP, IPv6 with or without brackets) is one of `hosts`.
pub fn names_host(hosts: &[String], host: &str) -> bool {
    let host = host.trim_start_matches('[').trim_end_matches(']');
    let host = match host.parse::<IpAddr>() {
        Ok(ip) => ip.to_string(),
        Err(_) => host.to_ascii_lowercase(),
    };
    hosts.contains(&host)
}

fn ip_from(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => <[u8; 4]>::try_from(bytes).ok().map(IpAddr::from),
        16 => <[u8; 16]>::try_from(bytes).ok().map(IpAddr::from),
        _ => None,
    }
}

/// A whole certificate and nothing after it; anything else is `None`.
fn parse(cert_der: &[u8]) -> Option<X509Certificate<'_>> {
    match x509_parser::parse_x509_certificate(cert_der) {
        Ok(([], cert)) => Some(cert),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::pki::{self, IssueRequest};
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    fn issued_der(role: &str) -> Vec<u8> {
        let dir = tempfile::tempdir().unwrap();
        pki::init_ca(dir.path(), false).unwrap();
        let (cert, _key) =
            pki::issue(dir.path(), &IssueRequest::new(role, &["localhost"])).unwrap();
        CertificateDer::from_pem_file(cert).unwrap().to_vec()
    }

    #[test]
    fn names_follow_the_rule() {
        for ok in ["orders", "a", "x1-y2", &"a".repeat(63)] {
            assert!(is_valid_name(ok), "{ok}");
        }
        for bad in [
            "",
            "Orders",
            "1orders",
            "-a",
            "a_b",
            "a.b",
            "a/b",
            "é",
            &"a".repeat(64),
        ] {
            assert!(!is_valid_name(bad), "{bad}");
        }
    }

    #[test]
    fn a_certificate_issued_by_the_pki_names_its_role() {
        let der = issued_der("orders");
        assert_eq!(role_of(&der).as_deref(), Some("orders"));
        let left = not_after(&der)
            .unwrap()
            .duration_since(SystemTime::now())
            .unwrap();
        let expected = pki::DEFAULT_VALIDITY.as_secs();
        assert!(left.as_secs().abs_diff(expected) < 60, "{left:?}");
    }

    #[test]
    fn a_certificate_without_a_uri_san_names_no_role() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
        let cert = params.self_signed(&key).unwrap();
        assert_eq!(role_of(cert.der()), None);
        assert!(not_after(cert.der()).is_some());
    }

    #[test]
    fn a_foreign_or_malformed_uri_names_no_role() {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        for uri in [
            "spiffe://other/role/orders",
            "spiffe://svc/role/Orders",
            "spiffe://svc/role/",
        ] {
            let mut params = rcgen::CertificateParams::default();
            params.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
            let cert = params.self_signed(&key).unwrap();
            assert_eq!(role_of(cert.der()), None, "{uri}");
        }
    }

    #[test]
    fn garbage_gives_none_and_never_panics() {
        let der = issued_der("payments");
        let mut inputs: Vec<Vec<u8>> = vec![vec![], vec![0x30], b"not a certificate".to_vec()];
        inputs.extend((0..der.len()).step_by(7).map(|n| der[..n].to_vec()));
        let mut trailing = der.clone();
        trailing.push(0);
        inputs.push(trailing);
        for (i, input) in inputs.iter().enumerate() {
            assert_eq!(role_of(input), None, "input {i}");
            assert_eq!(not_after(input), None, "input {i}");
        }
        let mut flipped = der;
        for i in (0..flipped.len()).step_by(3) {
            flipped[i] ^= 0xff;
            let _ = role_of(&flipped);
            let _ = not_after(&flipped);
            flipped[i] ^= 0xff;
        }
    }
}
