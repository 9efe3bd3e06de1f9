//! Talking to instances over HTTP: clients that present a cluster certificate and the
//! test API key, JSON getters, polling until a condition holds, and what the registry
//! and the peers views say.
//!
//! The clients never reuse a connection: every request opens a fresh one, so a
//! killed-and-restarted server is never reached through a stale pooled connection,
//! and no idle connection of ours delays a graceful drain.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use serde_json::Value;

use super::pki::client_as;
use super::process::Svc;

/// Polls `check` every 25 ms until it returns `Ok`, for at most `timeout`; panics with
/// `what` and the last `Err` otherwise. Returns the value and the time it took.
pub async fn wait_for<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> (T, Duration)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let started = Instant::now();
    loop {
        let last = match check().await {
            Ok(v) => return (v, started.elapsed()),
            Err(reason) => reason,
        };
        if started.elapsed() > timeout {
            panic!("timed out after {timeout:?} waiting for {what}; last: {last}");
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// A client builder that presents no certificate (plain HTTP, or TLS as reqwest does
/// by default).
pub fn plain_client_builder() -> reqwest::ClientBuilder {
    // reqwest builds a rustls config for every client; ring is svc's provider.
    svc_platform::tls::use_ring_by_default();
    reqwest::Client::builder()
}

/// A client that presents no certificate: plain HTTP, or TLS as reqwest does by default.
pub fn plain_client() -> reqwest::Client {
    plain_client_builder().build().expect("a plain HTTP client")
}

/// An HTTP client without connection reuse (see the module docs), presenting the
/// operator's certificate and the test API key.
pub fn http() -> reqwest::Client {
    client_as("operator")
}

/// GET `url` and parse JSON; `Err` on transport errors or non-2xx.
pub async fn try_get_json(url: &str) -> Result<Value, String> {
    let res = http()
        .get(url)
        .send()
        .await
        .map_err(|e| format!("GET {url}: {e}"))?;
    let status = res.status();
    let text = res.text().await.map_err(|e| format!("GET {url}: {e}"))?;
    if !status.is_success() {
        return Err(format!("GET {url}: {status}: {text}"));
    }
    serde_json::from_str(&text).map_err(|e| format!("GET {url}: not JSON ({e}): {text}"))
}

pub async fn get_json(url: &str) -> Value {
    try_get_json(url).await.unwrap_or_else(|e| panic!("{e}"))
}

/// POST `body` as JSON; returns the response whatever its status.
pub async fn post_json(url: &str, body: &Value) -> reqwest::Response {
    post_json_as("operator", url, body).await
}

/// [`post_json`] presenting `identity`'s certificate: internal writes accept only the
/// roles their manifest names (e.g. orders for a reservation, gateway for a product).
pub async fn post_json_as(identity: &str, url: &str, body: &Value) -> reqwest::Response {
    client_as(identity)
        .post(url)
        .json(body)
        .send()
        .await
        .unwrap_or_else(|e| panic!("POST {url}: {e}"))
}

/// The registry's catalog (`GET /v1/catalog`).
pub async fn catalog(registry: &Svc) -> Value {
    get_json(&format!("{}/v1/catalog", registry.url)).await
}

/// `(role, instance_id, address)` of every instance in a catalog-shaped document
/// (`/v1/catalog` of the registry or `/v1/peers` of an instance).
pub fn members(catalog: &Value) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    if let Some(roles) = catalog["roles"].as_object() {
        for (role, instances) in roles {
            for i in instances.as_array().into_iter().flatten() {
                out.push((
                    role.clone(),
                    i["instance_id"].as_str().unwrap_or_default().to_string(),
                    i["address"].as_str().unwrap_or_default().to_string(),
                ));
            }
        }
    }
    out.sort();
    out
}

/// Whether `catalog` lists `svc` (its role, instance id and address).
pub fn lists(catalog: &Value, svc: &Svc) -> bool {
    let role = svc.ready["role"].as_str().unwrap_or_default();
    members(catalog)
        .iter()
        .any(|(r, id, addr)| r == role && *id == svc.instance_id() && *addr == svc.internal_url)
}

/// Waits until the registry's catalog lists every one of `instances`.
pub async fn wait_registered(registry: &Svc, instances: &[&Svc]) -> Value {
    let url = format!("{}/v1/catalog", registry.url);
    wait_for(
        "instances in the catalog",
        Duration::from_secs(10),
        || async {
            let c = try_get_json(&url).await?;
            match instances.iter().find(|s| !lists(&c, s)) {
                None => Ok(c),
                Some(s) => Err(format!("{} missing from {c}", s.label)),
            }
        },
    )
    .await
    .0
}

/// Waits until `svc`'s `/v1/peers` lists every one of `peers`.
pub async fn wait_peers(svc: &Svc, peers: &[&Svc]) -> Value {
    let url = format!("{}/v1/peers", svc.internal_url);
    wait_for(
        &format!("peers in the view of {}", svc.label),
        Duration::from_secs(10),
        || async {
            let v = try_get_json(&url).await?;
            match peers.iter().find(|p| !lists(&v, p)) {
                None => Ok(v),
                Some(p) => Err(format!("{} missing from {v}", p.label)),
            }
        },
    )
    .await
    .0
}

/// Path helper for messages.
pub fn show(path: &Path) -> String {
    path.display().to_string()
}

/// A response header as text, if present and printable.
pub fn header(res: &reqwest::Response, name: &str) -> Option<String> {
    res.headers()
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// The kind of the I/O error behind `e`, if one is.
fn io_kind(e: &reqwest::Error) -> Option<std::io::ErrorKind> {
    let mut source = std::error::Error::source(e);
    while let Some(err) = source {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            return Some(io.kind());
        }
        source = err.source();
    }
    None
}

/// Whether `e` is a refused connection: nothing listened, so the request was never sent.
pub fn is_refused(e: &reqwest::Error) -> bool {
    io_kind(e) == Some(std::io::ErrorKind::ConnectionRefused)
}

/// Whether `e` is a connection reset by the server.
pub fn is_reset(e: &reqwest::Error) -> bool {
    io_kind(e) == Some(std::io::ErrorKind::ConnectionReset)
}

/// The sum of the samples of metric `name` whose labels include every pair of `labels`
/// (`None` when there is no such sample).
pub fn metric_sample(text: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    let values: Vec<f64> = text
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let (series, value) = l.rsplit_once(' ')?;
            let (metric_name, rest) = series.split_once('{').unwrap_or((series, ""));
            let all = labels
                .iter()
                .all(|(k, v)| rest.contains(&format!("{k}=\"{v}\"")));
            (metric_name == name && all)
                .then(|| value.parse::<f64>().ok())
                .flatten()
        })
        .collect();
    (!values.is_empty()).then(|| values.iter().sum())
}

/// Milliseconds since the Unix epoch (the registry's `renewed_at_ms` clock).
pub fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}
