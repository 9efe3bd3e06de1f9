//! The identities of every test cluster: one CA with a certificate per role and one for
//! the operator (what the tests themselves present), and the API key every test
//! gateway accepts.
//!
//! Made once per test process under cargo's target tmp dir (`svc_command` points every
//! child at it with `SVC_TLS_DIR` and `SVC_API_KEYS_FILE`), so all tests run with the
//! mutual TLS and API keys of production. Directories of earlier runs are removed.

use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderValue, AUTHORIZATION};
use svc_platform::tls::{client_config, pki, setup, TlsMaterial};

/// The key every test gateway accepts, with every scope and no practical rate limit.
pub const TEST_API_KEY: &str = "svck_test_0123456789abcdef0123456789abcdef";
/// The directory with `ca.crt` and `<role>.crt` / `<role>.key` for every role (and
/// `operator`).
pub fn test_pki() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let base = Path::new(env!("CARGO_TARGET_TMPDIR"));
        remove_stale(base);
        let dir = base.join(format!("test-pki-{}", std::process::id()));
        let roles = super::topology::all_roles();
        let roles: Vec<&str> = roles.iter().map(String::as_str).collect();
        pki::ensure_dev_pki(&dir, &roles).expect("test PKI");
        let keys = format!(
            "- name: tests\n  sha256: {}\n  scopes: [products:read, products:write, orders:read, orders:write]\n  rate_per_second: 100000\n  burst: 100000\n",
            sha256_hex(TEST_API_KEY)
        );
        std::fs::write(dir.join("api-keys.yaml"), keys).expect("api keys file");
        dir
    })
}

/// The API keys file of [`test_pki`].
pub fn api_keys_file() -> PathBuf {
    test_pki().join("api-keys.yaml")
}

fn sha256_hex(text: &str) -> String {
    use sha2::Digest as _;
    sha2::Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Test PKI dirs of processes that ended more than an hour ago.
fn remove_stale(base: &Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for entry in entries.flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let old = entry
            .metadata()
            .and_then(|m| m.modified())
            .ok()
            .and_then(|t| t.elapsed().ok())
            .is_some_and(|age| age > Duration::from_secs(3600));
        if name.starts_with("test-pki-") && old {
            let _ = std::fs::remove_dir_all(entry.path());
        }
    }
}

/// The TLS material of `identity` (a role or `operator`) from [`test_pki`].
pub fn material(identity: &str) -> Arc<TlsMaterial> {
    setup::load_identity(test_pki(), identity).expect("test identity")
}

/// An HTTP client presenting `identity`'s certificate, sending the test API key, and
/// opening a fresh connection for every request (see the harness docs).
pub fn client_as(identity: &str) -> reqwest::Client {
    client_of(test_pki(), identity, TEST_API_KEY)
}

/// [`client_as`] with the identities in `dir` (e.g. what `svc dev` made) and `api_key`.
pub fn client_of(dir: &Path, identity: &str, api_key: &str) -> reqwest::Client {
    let material = setup::load_identity(dir, identity).expect("identity");
    let mut headers = HeaderMap::new();
    headers.insert(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {api_key}")).unwrap(),
    );
    reqwest::Client::builder()
        .use_preconfigured_tls(client_config(&material))
        .default_headers(headers)
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

/// The certificate the server presented on the connection `client` used for `url`.
pub async fn served_cert(client: &reqwest::Client, url: &str) -> Result<Vec<u8>, String> {
    let res = client.get(url).send().await.map_err(|e| e.to_string())?;
    if !res.status().is_success() {
        return Err(format!("{url}: {}", res.status()));
    }
    res.extensions()
        .get::<reqwest::tls::TlsInfo>()
        .and_then(|info| info.peer_certificate())
        .map(<[u8]>::to_vec)
        .ok_or_else(|| "no TLS info".to_string())
}

/// A private copy of the test PKI in `sandbox`'s directory, so rotating it touches no
/// other test.
pub fn own_pki(sandbox: &super::Sandbox) -> PathBuf {
    let dir = sandbox.dir.path().join("tls");
    std::fs::create_dir_all(&dir).unwrap();
    for entry in std::fs::read_dir(test_pki()).unwrap() {
        let entry = entry.unwrap();
        std::fs::copy(entry.path(), dir.join(entry.file_name())).unwrap();
    }
    dir
}
