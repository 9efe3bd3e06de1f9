//! HTTP client of the registry API, used by discovery, `svc status` and `svc dev`.
//!
//! Each call targets one registry URL; the callers decide how to spread over several
//! (register at all of them, read from whichever answers). Errors are typed so a caller
//! can tell "this registry is down" from "it no longer knows my lease".

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;

use super::registry_api::{Catalog, LeaseGrant, Registration, REGISTRY_ROLE};
use super::tls::{http_client_builder, TlsMaterial};

#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    #[error("registry {url} cannot be reached: {detail}")]
    Unreachable { url: String, detail: String },
    #[error("registry {url} does not know this instance")]
    UnknownInstance { url: String },
    /// 409: the registry refuses the registration as it stands (e.g. another live
    /// instance holds the shard it claims); `detail` says why.
    #[error("registry {url} refused the registration: {detail}")]
    Conflict { url: String, detail: String },
    #[error("registry {url} refused the request ({status}): {detail}")]
    Rejected {
        url: String,
        status: u16,
        detail: String,
    },
    #[error("no registry is configured")]
    NoneConfigured,
}

#[derive(Clone)]
pub struct RegistryClient {
    http: reqwest::Client,
    urls: Vec<String>,
    timeout: Duration,
}

impl RegistryClient {
    /// A client for `urls`; with `tls`, every call presents this instance's certificate.
    pub fn new(
        urls: Vec<String>,
        timeout: Duration,
        tls: Option<&Arc<TlsMaterial>>,
    ) -> anyhow::Result<RegistryClient> {
        let http = http_client_builder(tls, Some(REGISTRY_ROLE))
            .connect_timeout(timeout)
            .build()
            .context("cannot build the registry client")?;
        Ok(RegistryClient {
            http,
            urls: urls
                .into_iter()
                .map(|u| u.trim_end_matches('/').to_string())
                .collect(),
            timeout,
        })
    }

    pub(crate) fn urls(&self) -> &[String] {
        &self.urls
    }

    pub(crate) async fn register(
        &self,
        url: &str,
        reg: &Registration,
    ) -> Result<LeaseGrant, RegistryError> {
        let req = self.http.post(format!("{url}/v1/instances")).json(reg);
        self.send_json(url, req, self.timeout).await
    }

    pub(crate) async fn renew(
        &self,
        url: &str,
        role: &str,
        id: &str,
    ) -> Result<LeaseGrant, RegistryError> {
        let req = self
            .http
            .put(format!("{url}/v1/instances/{role}/{id}/lease"));
        self.send_json(url, req, self.timeout).await
    }

    pub(crate) async fn deregister(
        &self,
        url: &str,
        role: &str,
        id: &str,
    ) -> Result<(), RegistryError> {
        let req = self.http.delete(format!("{url}/v1/instances/{role}/{id}"));
        match self
            .send_json::<serde_json::Value>(url, req, self.timeout)
            .await
        {
            Ok(_) | Err(RegistryError::UnknownInstance { .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Reads the catalog; with `index`, blocks until the registry's index passes it or
    /// `wait` elapses (a blocking query).
    pub(crate) async fn catalog(
        &self,
        url: &str,
        index: Option<u64>,
        wait: Duration,
    ) -> Result<Catalog, RegistryError> {
        let mut req = self.http.get(format!("{url}/v1/catalog"));
        if let Some(index) = index {
            req = req.query(&[
                ("index", index.to_string()),
                ("wait", format!("{}ms", wait.as_millis())),
            ]);
        }
        self.send_json(url, req, wait + self.timeout).await
    }

    /// The catalog from the first registry that answers, in configured order.
    pub async fn catalog_from_any(&self) -> Result<(String, Catalog), RegistryError> {
        let mut last = RegistryError::NoneConfigured;
        for url in &self.urls {
            match self.catalog(url, None, Duration::ZERO).await {
                Ok(c) => return Ok((url.clone(), c)),
                Err(e) => last = e,
            }
        }
        Err(last)
    }

    async fn send_json<T: serde::de::DeserializeOwned>(
        &self,
        url: &str,
        req: reqwest::RequestBuilder,
        timeout: Duration,
    ) -> Result<T, RegistryError> {
        let unreachable = |e: reqwest::Error| RegistryError::Unreachable {
            url: url.to_string(),
            detail: e.to_string(),
        };
        let res = req.timeout(timeout).send().await.map_err(unreachable)?;
        let status = res.status();
        if status == reqwest::StatusCode::NOT_FOUND {
            return Err(RegistryError::UnknownInstance {
                url: url.to_string(),
            });
        }
        if status == reqwest::StatusCode::CONFLICT {
            let body = res.text().await.unwrap_or_default();
            // The problem's `detail` is the sentence for the log; else the raw body.
            let detail = serde_json::from_str::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| v.get("detail")?.as_str().map(str::to_string))
                .unwrap_or(body);
            return Err(RegistryError::Conflict {
                url: url.to_string(),
                detail,
            });
        }
        if !status.is_success() {
            let detail = res.text().await.unwrap_or_default();
            return Err(RegistryError::Rejected {
                url: url.to_string(),
                status: status.as_u16(),
                detail,
            });
        }
        res.json().await.map_err(unreachable)
    }
}
