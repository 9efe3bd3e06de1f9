//! The `app:` section: the application a sidecar runs beside (`svc run --role R --app
//! URL`, for a role from a file). Read only by the sidecar; checked everywhere, like the
//! roles' sections.
//!
//! ```yaml
//! app:
//!   url: http://127.0.0.1:9000   # or --app; loopback only
//!   health_path: /health         # 2xx = healthy
//!   health_interval: 1s
//!   timeout: 30s                 # a request with no deadline of its caller's
//! ```

use serde::{Deserialize, Serialize};
use svc_platform::config::{ConfigError, PositiveDuration};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AppSettings {
    /// Base URL of the application: `http://` on a loopback address. Unset: no sidecar.
    pub url: Option<String>,
    /// Path of the application's health endpoint; healthy while it answers 2xx.
    pub health_path: String,
    /// How often the health endpoint is asked (also the time it has to answer).
    pub health_interval: PositiveDuration,
    /// The longest a forwarded request may take when its caller sent no deadline.
    pub timeout: PositiveDuration,
}

impl Default for AppSettings {
    fn default() -> Self {
        AppSettings {
            url: None,
            health_path: "/health".to_string(),
            health_interval: PositiveDuration::from_secs(1),
            timeout: PositiveDuration::from_secs(30),
        }
    }
}

/// Flags and `SVC_*` values that replace the file's.
#[derive(Debug, Clone, Default)]
pub struct AppOverrides {
    pub url: Option<String>,
}

impl AppSettings {
    pub fn apply(&mut self, overrides: AppOverrides) {
        if let Some(url) = overrides.url {
            self.url = Some(url);
        }
    }

    /// The URL must be plain HTTP on loopback (the app is reached only from its own
    /// host, and only through the sidecar), the health path absolute.
    pub fn check(&self, origin: &str) -> Result<(), ConfigError> {
        let error = |key: &str, reason: String| ConfigError {
            file: origin.to_string(),
            key: key.to_string(),
            reason,
        };
        if let Some(url) = &self.url {
            app_base_url(url).map_err(|reason| error("app.url", reason))?;
        }
        if !self.health_path.starts_with('/') {
            return Err(error(
                "app.health_path",
                format!("`{}` must start with `/`", self.health_path),
            ));
        }
        Ok(())
    }
}

/// `url` without a trailing `/`, if it is `http://<loopback>:<port>` with no path.
pub fn app_base_url(url: &str) -> Result<String, String> {
    let expected = "expected http://127.0.0.1:<port> (or [::1], localhost)";
    let parsed = reqwest::Url::parse(url).map_err(|e| format!("`{url}`: {e}; {expected}"))?;
    let host = parsed.host_str().unwrap_or_default();
    let loopback = host == "localhost"
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    if parsed.scheme() != "http" || !loopback || parsed.port().is_none() {
        return Err(format!("`{url}`: {expected}"));
    }
    if parsed.path() != "/" || parsed.query().is_some() {
        return Err(format!(
            "`{url}`: a base URL without path or query; {expected}"
        ));
    }
    Ok(url.trim_end_matches('/').to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_http_on_loopback_with_a_port() {
        assert_eq!(
            app_base_url("http://127.0.0.1:9000/").unwrap(),
            "http://127.0.0.1:9000"
        );
        assert!(app_base_url("http://[::1]:9000").is_ok());
        assert!(app_base_url("http://localhost:9000").is_ok());
        for bad in [
            "https://127.0.0.1:9000",
            "http://10.0.0.5:9000",
            "http://127.0.0.1",
            "http://127.0.0.1:9000/api",
            "127.0.0.1:9000",
        ] {
            assert!(app_base_url(bad).is_err(), "{bad}");
        }
    }
}
