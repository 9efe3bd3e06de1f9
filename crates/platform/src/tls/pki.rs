//! The cluster's PKI on disk: one CA (`ca.crt`, `ca.key`) and, beside it, one
//! `<name>.crt` / `<name>.key` pair per identity, made by `svc certs` and `svc dev`.
//!
//! Guarantees:
//! - Every key is ECDSA P-256, made here with ring; nothing calls OpenSSL.
//! - A file is written whole or not at all (temporary file in the same directory, then
//!   rename), and a private key is never readable by others, not even half-written: it
//!   is created with mode 0600. Certificates are 0644; a directory made here is 0700.
//! - Nothing existing is replaced unless asked (`force`), and `ca.crt`/`ca.key` can never
//!   be overwritten by an issued certificate (the name `ca` is refused).
//! - An issued certificate names its role as `spiffe://svc/role/<role>` (see
//!   [`super::identity`]), is valid for both server and client authentication (every
//!   instance is both), and starts 5 minutes in the past to absorb clock skew.
//! - Every error names the file it is about.

use std::fs::{self, DirBuilder, File, OpenOptions, Permissions};
use std::io::{self, Write as _};
use std::net::IpAddr;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose, PublicKeyData as _, SanType,
};
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, DnsName};

use super::identity;

/// The CA certificate's file name in a PKI directory (what instances trust).
const CA_CERT: &str = "ca.crt";
/// The CA key's file name; it only needs to be where certificates are issued.
pub const CA_KEY: &str = "ca.key";
/// The identity of people and tools (`svc status`), beside the roles.
pub const OPERATOR: &str = "operator";
/// How long an instance certificate is valid unless `--valid-for` says otherwise.
pub(crate) const DEFAULT_VALIDITY: Duration = Duration::from_secs(90 * DAY);
/// How long the CA is valid.
const CA_VALIDITY: Duration = Duration::from_secs(3650 * DAY);
/// How far `not_before` lies in the past, so a peer whose clock is behind accepts it.
const CLOCK_SKEW: Duration = Duration::from_secs(5 * 60);
/// `svc dev`'s certificates: valid this long, renewed when less than `DEV_RENEW_WITHIN` is left.
const DEV_VALIDITY: Duration = Duration::from_secs(30 * DAY);
const DEV_RENEW_WITHIN: Duration = Duration::from_secs(7 * DAY);
/// The hosts of `svc dev`'s certificates: everything runs on loopback.
const DEV_HOSTS: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

const DAY: u64 = 24 * 60 * 60;
const CA_COMMON_NAME: &str = "svc cluster CA";
const KEY_MODE: u32 = 0o600;
const CERT_MODE: u32 = 0o644;
const DIR_MODE: u32 = 0o700;

#[derive(Debug, thiserror::Error)]
pub enum PkiError {
    #[error("{}: already exists; pass --force to replace it", .path.display())]
    Exists { path: PathBuf },
    #[error("{}: not found; create the cluster CA first with `svc certs init --dir {}`", .path.display(), .dir.display())]
    NoCa { path: PathBuf, dir: PathBuf },
    #[error("{}: cannot {action}: {source}", .path.display())]
    Io {
        path: PathBuf,
        action: &'static str,
        source: io::Error,
    },
    #[error("{}: {reason}", .path.display())]
    Invalid { path: PathBuf, reason: String },
    /// The request itself is wrong (name, host, validity): a usage error.
    #[error("{}: {reason}", .dir.display())]
    BadRequest { dir: PathBuf, reason: String },
}

/// What [`issue`] makes: a certificate and key for one identity.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IssueRequest {
    /// The role the certificate speaks for (a role of the catalog, or `operator`).
    pub role: String,
    /// File stem: `<name>.crt` / `<name>.key`. Usually the role.
    pub name: String,
    /// DNS names or IP addresses peers use to reach this instance.
    pub hosts: Vec<String>,
    pub valid_for: Duration,
    /// Replace existing files.
    pub force: bool,
}

impl IssueRequest {
    /// A request for `role`, files named after it, valid [`DEFAULT_VALIDITY`], no force.
    pub fn new(role: &str, hosts: &[&str]) -> IssueRequest {
        IssueRequest {
            role: role.to_string(),
            name: role.to_string(),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
            valid_for: DEFAULT_VALIDITY,
            force: false,
        }
    }
}

/// `<dir>/<name>.crt`
fn cert_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.crt"))
}

/// `<dir>/<name>.key`
fn key_file(dir: &Path, name: &str) -> PathBuf {
    dir.join(format!("{name}.key"))
}

/// Makes the cluster CA in `dir` (created 0700 if missing); returns the `ca.crt` path.
pub fn init_ca(dir: &Path, force: bool) -> Result<PathBuf, PkiError> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    if !force {
        refuse_existing(&[&cert_path, &key_path])?;
    }
    if !dir.is_dir() {
        // Parents get the usual mode (others may need to pass through them); DIR is 0700.
        if let Some(parent) = dir.parent().filter(|p| !p.as_os_str().is_empty()) {
            fs::create_dir_all(parent).map_err(|e| io_error(parent, "create the directory", e))?;
        }
        DirBuilder::new()
            .mode(DIR_MODE)
            .create(dir)
            .map_err(|e| io_error(dir, "create the directory", e))?;
    }
    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(CA_COMMON_NAME);
    params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
    set_validity(&mut params, CA_VALIDITY);
    let key = new_key(&key_path)?;
    let cert = params
        .self_signed(&key)
        .map_err(|e| invalid(&cert_path, e))?;
    write_atomically(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
    write_atomically(&cert_path, cert.pem().as_bytes(), CERT_MODE)?;
    Ok(cert_path)
}

/// Issues `<name>.crt` / `<name>.key` in `dir`, signed by the CA there.
pub fn issue(dir: &Path, req: &IssueRequest) -> Result<(PathBuf, PathBuf), PkiError> {
    let bad = |reason: String| PkiError::BadRequest {
        dir: dir.to_path_buf(),
        reason,
    };
    for (what, value) in [("role", &req.role), ("name", &req.name)] {
        if !identity::is_valid_name(value) {
            return Err(bad(format!(
                "invalid {what} `{value}`: use [a-z][a-z0-9-]*, at most {} characters",
                identity::MAX_NAME_LEN
            )));
        }
    }
    if req.name == "ca" {
        return Err(bad("the name `ca` is the cluster CA's own".to_string()));
    }
    if req.valid_for.is_zero() {
        return Err(bad("the validity must be longer than zero".to_string()));
    }
    let mut sans = vec![SanType::URI(ia5(dir, &identity::spiffe_id(&req.role))?)];
    for host in &req.hosts {
        let san = match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if DnsName::try_from(host.as_str()).is_ok() => SanType::DnsName(ia5(dir, host)?),
            Err(_) => {
                return Err(bad(format!(
                    "`{host}` is neither a DNS name nor an IP address"
                )))
            }
        };
        if !sans.contains(&san) {
            sans.push(san);
        }
    }
    let (cert_path, key_path) = (cert_file(dir, &req.name), key_file(dir, &req.name));
    if !req.force {
        refuse_existing(&[&cert_path, &key_path])?;
    }
    let issuer = load_ca(dir)?;

    let mut params = CertificateParams::default();
    params.distinguished_name = common_name(&req.role);
    params.subject_alt_names = sans;
    params.is_ca = IsCa::ExplicitNoCa;
    params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
    params.extended_key_usages = vec![
        ExtendedKeyUsagePurpose::ServerAuth,
        ExtendedKeyUsagePurpose::ClientAuth,
    ];
    params.use_authority_key_identifier_extension = true;
    set_validity(&mut params, req.valid_for);
    let key = new_key(&key_path)?;
    let cert = params
        .signed_by(&key, &issuer)
        .map_err(|e| invalid(&cert_path, e))?;
    write_atomically(&key_path, key.serialize_pem().as_bytes(), KEY_MODE)?;
    write_atomically(&cert_path, cert.pem().as_bytes(), CERT_MODE)?;
    Ok((cert_path, key_path))
}

/// `svc dev`'s PKI in `dir`: a CA, and a loopback certificate for each of `roles` and
/// [`OPERATOR`]. Makes only what is missing, expires within [`DEV_RENEW_WITHIN`], or was
/// not signed by the CA in `dir` (so all of them after a new CA); a second call changes
/// nothing.
pub fn ensure_dev_pki(dir: &Path, roles: &[&str]) -> Result<(), PkiError> {
    let ca_path = dir.join(CA_CERT);
    if !dir.join(CA_KEY).exists() || !lasts(&ca_path, None) {
        init_ca(dir, true)?;
    }
    let ca = CertificateDer::from_pem_file(&ca_path).map_err(|e| invalid(&ca_path, e))?;
    let mut names: Vec<&str> = roles.to_vec();
    names.push(OPERATOR);
    for (i, name) in names.iter().enumerate() {
        let done = names[..i].contains(name)
            || (key_file(dir, name).exists() && lasts(&cert_file(dir, name), Some(&ca)));
        if !done {
            let mut req = IssueRequest::new(name, &DEV_HOSTS);
            req.valid_for = DEV_VALIDITY;
            req.force = true;
            issue(dir, &req)?;
        }
    }
    Ok(())
}

/// Whether the certificate at `path` reads, is valid beyond [`DEV_RENEW_WITHIN`], and,
/// given an `issuer`, is signed by it.
fn lasts(path: &Path, issuer: Option<&[u8]>) -> bool {
    let Ok(der) = CertificateDer::from_pem_file(path) else {
        return false;
    };
    let signed = issuer.is_none_or(|issuer| {
        let parsed = (
            x509_parser::parse_x509_certificate(&der),
            x509_parser::parse_x509_certificate(issuer),
        );
        let (Ok((_, cert)), Ok((_, issuer))) = parsed else {
            return false;
        };
        cert.verify_signature(Some(issuer.public_key())).is_ok()
    });
    let renew_from = SystemTime::now() + DEV_RENEW_WITHIN;
    signed && identity::not_after(&der).is_some_and(|end| end > renew_from)
}

/// The CA of `dir`, ready to sign: `ca.key` and the certificate in `ca.crt` that it
/// belongs to (the file may hold several during a CA rotation).
fn load_ca(dir: &Path) -> Result<Issuer<'static, KeyPair>, PkiError> {
    let (cert_path, key_path) = (dir.join(CA_CERT), dir.join(CA_KEY));
    let read = |path: &Path| {
        fs::read_to_string(path).map_err(|e| match e.kind() {
            io::ErrorKind::NotFound => PkiError::NoCa {
                path: path.to_path_buf(),
                dir: dir.to_path_buf(),
            },
            _ => io_error(path, "read", e),
        })
    };
    let cert_pem = read(&cert_path)?;
    let key = KeyPair::from_pem(&read(&key_path)?)
        .map_err(|e| invalid(&key_path, format!("not a usable private key: {e}")))?;
    let spki = key.subject_public_key_info();
    let certs = CertificateDer::pem_slice_iter(cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(&cert_path, format!("not a PEM certificate file: {e}")))?;
    let ca = certs.into_iter().find(|der| {
        x509_parser::parse_x509_certificate(der)
            .is_ok_and(|(_, c)| c.is_ca() && c.public_key().raw == spki.as_slice())
    });
    let ca = ca.ok_or_else(|| {
        invalid(
            &cert_path,
            format!("holds no CA certificate for the key {}", key_path.display()),
        )
    })?;
    Issuer::from_ca_cert_der(&ca, key).map_err(|e| invalid(&cert_path, e))
}

/// Writes `contents` to `path` whole or not at all; the file has `mode` from the moment
/// it exists (whatever the umask), so a key is never readable by others.
fn write_atomically(path: &Path, contents: &[u8], mode: u32) -> Result<(), PkiError> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let stamp = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default()
        .as_nanos();
    let file_name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = dir.join(format!(".{file_name}.{}.{stamp}.tmp", std::process::id()));
    let written = (|| {
        let mut file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)?;
        file.set_permissions(Permissions::from_mode(mode))?;
        file.write_all(contents)?;
        file.sync_all()?;
        fs::rename(&tmp, path)
    })();
    if let Err(e) = written {
        let _ = fs::remove_file(&tmp);
        return Err(io_error(path, "write", e));
    }
    // Make the rename itself durable; the file is already whole either way.
    let _ = File::open(dir).and_then(|d| d.sync_all());
    Ok(())
}

fn refuse_existing(paths: &[&Path]) -> Result<(), PkiError> {
    match paths.iter().find(|p| p.exists()) {
        Some(path) => Err(PkiError::Exists {
            path: path.to_path_buf(),
        }),
        None => Ok(()),
    }
}

fn set_validity(params: &mut CertificateParams, valid_for: Duration) {
    let now = SystemTime::now();
    params.not_before = (now - CLOCK_SKEW).into();
    params.not_after = (now + valid_for).into();
}

fn common_name(name: &str) -> DistinguishedName {
    let mut dn = DistinguishedName::new();
    dn.push(DnType::CommonName, name);
    dn
}

fn new_key(path: &Path) -> Result<KeyPair, PkiError> {
    KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).map_err(|e| invalid(path, e))
}

fn ia5(dir: &Path, text: &str) -> Result<rcgen::string::Ia5String, PkiError> {
    text.try_into().map_err(|e| PkiError::BadRequest {
        dir: dir.to_path_buf(),
        reason: format!("`{text}`: {e}"),
    })
}

fn io_error(path: &Path, action: &'static str, source: io::Error) -> PkiError {
    PkiError::Io {
        path: path.to_path_buf(),
        action,
        source,
    }
}

fn invalid(path: &Path, reason: impl ToString) -> PkiError {
    PkiError::Invalid {
        path: path.to_path_buf(),
        reason: reason.to_string(),
    }
}

#[cfg(test)]
mod tests;
