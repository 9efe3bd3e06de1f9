//! The sidecar: `svc run --role R --app URL` runs the platform for a role from a file
//! (a manifest in `roles.dir`) whose code is an application svc does not contain.
//!
//! To the platform it is one more [`RoleStart`]: the lifecycle registers, renews,
//! serves mutual TLS, enforces the manifest's callers and applies the server limits and
//! middleware as for any role. The sidecar adds two things: every declared endpoint is
//! forwarded to the application ([`forward`]), and the instance is healthy only while
//! the application's health endpoint answers 2xx ([`app_health`], through the role's
//! `HealthGate`). It sits beside `roles/`, not in it (it is no role: it runs any role
//! from a file) nor in the platform (which stays what roles stand on; this is built on
//! its public API only).

pub mod app_health;
pub mod forward;
pub mod settings;

use std::collections::BTreeMap;
use std::sync::Arc;

use actix_web::http::Method;
use actix_web::web;
use svc_platform::role::{RoleContext, RoleStart, Routes};

use forward::AppLink;
use settings::{app_base_url, AppSettings};

/// The start of a sidecar for the application `settings` names (`app.url` is set).
pub fn start_with(settings: &AppSettings) -> RoleStart<'_> {
    Box::new(move |ctx| start(ctx, settings))
}

fn start(ctx: &RoleContext, settings: &AppSettings) -> anyhow::Result<Routes> {
    let url = settings
        .url
        .as_deref()
        .ok_or_else(|| anyhow::anyhow!("a sidecar needs app.url (--app)"))?;
    let base_url = app_base_url(url).map_err(anyhow::Error::msg)?;
    // Not ready (nor registered) until the application first answers.
    ctx.health.set_healthy(false);
    app_health::spawn_checker(
        format!("{base_url}{}", settings.health_path),
        settings.health_interval.get(),
        ctx.health.clone(),
        ctx.shutdown.clone(),
    );
    let endpoints = endpoints_by_path(ctx.manifest.endpoints())?;
    let timeout = settings.timeout.get();
    Ok(Arc::new(move |cfg: &mut web::ServiceConfig| {
        cfg.app_data(web::Data::new(AppLink {
            client: reqwest::Client::new(),
            base_url: base_url.clone(),
            timeout,
        }));
        for (path, methods) in &endpoints {
            let mut resource = web::resource(path.as_str());
            for method in methods {
                resource = resource.route(web::method(method.clone()).to(forward::forward));
            }
            cfg.service(resource);
        }
    }))
}

/// The manifest's endpoints grouped by path template: one actix resource each, so
/// the metrics name the template and another method of a declared path is 405.
fn endpoints_by_path<'a>(
    endpoints: impl Iterator<Item = (&'a str, &'a str)>,
) -> anyhow::Result<BTreeMap<String, Vec<Method>>> {
    let mut by_path: BTreeMap<String, Vec<Method>> = BTreeMap::new();
    for (method, path) in endpoints {
        let method = Method::from_bytes(method.as_bytes())
            .map_err(|_| anyhow::anyhow!("endpoint `{method} {path}`: not an HTTP method"))?;
        by_path.entry(path.to_string()).or_default().push(method);
    }
    Ok(by_path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_of_one_path_share_a_resource() {
        let endpoints = [
            ("GET", "/v1/points/{customer}"),
            ("PUT", "/v1/points/{customer}"),
            ("POST", "/v1/events"),
        ];
        let by_path = endpoints_by_path(endpoints.into_iter()).unwrap();
        assert_eq!(by_path.len(), 2);
        assert_eq!(by_path["/v1/points/{customer}"], [Method::GET, Method::PUT]);
    }
}
