//! What `svc status` found, as JSON (`--json`) or as a table for a terminal.
//!
//! Figures that could not be read are `null` in JSON and `-` in the table, never zero:
//! an instance that cannot be scraped is not an idle one.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use super::prom::Figures;
use svc_platform::registry_api::Instance;

#[derive(Debug, Serialize)]
pub struct Report {
    /// The registry the catalog was read from, and its index.
    pub registry: String,
    pub index: u64,
    pub registries: Vec<RegistryStatus>,
    /// Length of the window rates and p99 cover, in seconds.
    pub window_s: f64,
    pub roles: Vec<RoleStatus>,
    pub instances: Vec<InstanceStatus>,
}

#[derive(Debug, Serialize)]
pub struct RegistryStatus {
    pub url: String,
    /// `ready`, or what went wrong.
    pub health: String,
}

#[derive(Debug, Serialize)]
pub struct RoleStatus {
    pub role: String,
    pub instances: usize,
    pub ready: usize,
}

#[derive(Debug, Serialize)]
pub struct InstanceStatus {
    pub role: String,
    pub instance_id: String,
    pub address: String,
    /// The `shard` of its registration metadata, if it has one.
    pub shard: Option<String>,
    pub version: String,
    /// `ready`, `not ready (503)`, `unreachable`, ...
    pub health: String,
    pub ready: bool,
    pub registered_at_ms: u64,
    pub renewed_at_ms: u64,
    /// Time since registration, and since the last renewal (lease age), by this clock.
    pub up_ms: u64,
    pub lease_age_ms: u64,
    /// Requests per second over the window (probes and scrapes left out).
    pub requests_per_s: Option<f64>,
    /// 5xx answers since the instance started, and within the window.
    pub errors_5xx: Option<u64>,
    pub errors_5xx_window: Option<u64>,
    /// p99 latency over the window; `null` if no request came in it.
    pub p99_ms: Option<f64>,
    /// p99 latency since the instance started.
    pub p99_ms_since_start: Option<f64>,
    /// Why the figures are missing, if they are.
    pub metrics_error: Option<String>,
}

impl InstanceStatus {
    pub fn new(
        i: &Instance,
        health: Result<(), String>,
        before: Result<Figures, String>,
        after: Result<Figures, String>,
        window: Duration,
        now_ms: u64,
    ) -> InstanceStatus {
        let (windowed, total, metrics_error) = match (&before, &after) {
            (Ok(b), Ok(a)) => (Some(a.since(b)), Some(a), None),
            (Err(e), _) | (_, Err(e)) => (None, after.as_ref().ok(), Some(e.clone())),
        };
        let secs = window.as_secs_f64().max(1e-3);
        let ms = |s: f64| (s * 1e6).round() / 1e3;
        InstanceStatus {
            role: i.role.clone(),
            instance_id: i.instance_id.clone(),
            address: i.address.clone(),
            shard: i.metadata.get("shard").cloned(),
            version: i.version.clone(),
            ready: health.is_ok(),
            health: health.err().unwrap_or_else(|| "ready".to_string()),
            registered_at_ms: i.registered_at_ms,
            renewed_at_ms: i.renewed_at_ms,
            up_ms: now_ms.saturating_sub(i.registered_at_ms),
            lease_age_ms: now_ms.saturating_sub(i.renewed_at_ms),
            requests_per_s: windowed
                .as_ref()
                .map(|w| (w.requests / secs * 10.0).round() / 10.0),
            errors_5xx: total.map(|t| t.errors_5xx as u64),
            errors_5xx_window: windowed.as_ref().map(|w| w.errors_5xx as u64),
            p99_ms: windowed.as_ref().and_then(|w| w.quantile(0.99)).map(ms),
            p99_ms_since_start: total.and_then(|t| t.quantile(0.99)).map(ms),
            metrics_error,
        }
    }
}

impl Report {
    pub fn new(
        registry: String,
        index: u64,
        registries: Vec<RegistryStatus>,
        known_roles: &[String],
        mut instances: Vec<InstanceStatus>,
        window: Duration,
    ) -> Report {
        instances.sort_by(|a, b| {
            (role_rank(known_roles, &a.role), &a.role, &a.instance_id).cmp(&(
                role_rank(known_roles, &b.role),
                &b.role,
                &b.instance_id,
            ))
        });
        let mut names: Vec<&String> = known_roles.iter().collect();
        for i in &instances {
            if !names.contains(&&i.role) {
                names.push(&i.role);
            }
        }
        let roles = names
            .into_iter()
            .map(|role| RoleStatus {
                role: role.clone(),
                instances: instances.iter().filter(|i| &i.role == role).count(),
                ready: instances
                    .iter()
                    .filter(|i| &i.role == role && i.ready)
                    .count(),
            })
            .collect();
        Report {
            registry,
            index,
            registries,
            window_s: (window.as_secs_f64() * 1000.0).round() / 1000.0,
            roles,
            instances,
        }
    }

    /// The table: registries, then one row per instance (and per role without one).
    pub fn table(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "registry {} (index {})", self.registry, self.index);
        for r in &self.registries {
            let _ = writeln!(out, "  {:<32} {}", r.url, r.health);
        }
        let _ = writeln!(out);
        let headers = [
            "ROLE", "INSTANCE", "ADDRESS", "SHARD", "HEALTH", "UP", "RENEWED", "REQ/S", "5XX",
            "P99", "VERSION",
        ];
        let mut rows: Vec<Vec<String>> = Vec::new();
        for role in &self.roles {
            let mine: Vec<&InstanceStatus> = self
                .instances
                .iter()
                .filter(|i| i.role == role.role)
                .collect();
            if mine.is_empty() {
                rows.push(vec![
                    role.role.clone(),
                    "-".into(),
                    "(no instance registered)".into(),
                ]);
            }
            for i in mine {
                rows.push(vec![
                    i.role.clone(),
                    i.instance_id.clone(),
                    i.address.clone(),
                    i.shard.clone().unwrap_or_else(|| "-".into()),
                    i.health.clone(),
                    short_age(i.up_ms),
                    format!("{:.1}s ago", i.lease_age_ms as f64 / 1000.0),
                    i.requests_per_s.map_or("-".into(), |r| format!("{r:.1}")),
                    i.errors_5xx.map_or("-".into(), |e| e.to_string()),
                    i.p99_ms.map_or("-".into(), |p| format!("{p:.1}ms")),
                    i.version.clone(),
                ]);
            }
        }
        let mut widths: Vec<usize> = headers.iter().map(|h| h.len()).collect();
        for row in &rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header_row: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header_row).chain(&rows) {
            let line = row
                .iter()
                .zip(&widths)
                .map(|(cell, w)| format!("{cell:<w$}"))
                .collect::<Vec<_>>()
                .join("  ");
            let _ = writeln!(out, "{}", line.trim_end());
        }
        let total: usize = self.roles.iter().map(|r| r.instances).sum();
        let ready: usize = self.roles.iter().map(|r| r.ready).sum();
        let _ = writeln!(
            out,
            "\n{total} instances, {ready} ready. REQ/S and P99 over the last {:.1}s (probes and \
             scrapes left out); 5XX since each instance started.",
            self.window_s
        );
        for i in self.instances.iter().filter(|i| i.metrics_error.is_some()) {
            let _ = writeln!(
                out,
                "  {}: no figures: {}",
                i.instance_id,
                i.metrics_error.as_deref().unwrap_or_default()
            );
        }
        out
    }
}

/// Catalog order for known roles, then the others by name.
fn role_rank(known: &[String], role: &str) -> usize {
    known.iter().position(|r| r == role).unwrap_or(known.len())
}

fn short_age(ms: u64) -> String {
    let s = ms / 1000;
    match s {
        0..=59 => format!("{s}s"),
        60..=3599 => format!("{}m{:02}s", s / 60, s % 60),
        3600..=86399 => format!("{}h{:02}m", s / 3600, (s % 3600) / 60),
        _ => format!("{}d{:02}h", s / 86400, (s % 86400) / 3600),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    fn instance(role: &str, id: &str, shard: Option<&str>) -> Instance {
        Instance {
            role: role.into(),
            instance_id: id.into(),
            address: format!("http://127.0.0.1:1/{id}"),
            version: "0.1.0".into(),
            metadata: shard
                .map(|s| BTreeMap::from([("shard".to_string(), s.to_string())]))
                .unwrap_or_default(),
            registered_at_ms: 1_000,
            renewed_at_ms: 60_000,
        }
    }

    #[test]
    fn rows_keep_role_instance_address_first_and_show_missing_roles() {
        let before = Figures {
            requests: 10.0,
            errors_5xx: 1.0,
            buckets: vec![(0.01, 10.0), (f64::INFINITY, 10.0)],
        };
        let after = Figures {
            requests: 30.0,
            errors_5xx: 2.0,
            buckets: vec![(0.01, 30.0), (f64::INFINITY, 30.0)],
        };
        let ok = InstanceStatus::new(
            &instance("orders", "ord-1", Some("1")),
            Ok(()),
            Ok(before),
            Ok(after),
            Duration::from_secs(2),
            61_500,
        );
        assert_eq!(ok.requests_per_s, Some(10.0));
        assert_eq!((ok.errors_5xx, ok.errors_5xx_window), (Some(2), Some(1)));
        assert_eq!(ok.lease_age_ms, 1_500);
        assert_eq!(ok.p99_ms, Some(9.9));
        let down = InstanceStatus::new(
            &instance("gateway", "gw-1", None),
            Err("unreachable".into()),
            Err("GET x: refused".into()),
            Err("GET x: refused".into()),
            Duration::from_secs(2),
            61_500,
        );
        let known = ["gateway", "orders", "payments"].map(String::from);
        let report = Report::new(
            "http://r:7700".into(),
            4,
            vec![],
            &known,
            vec![ok, down],
            Duration::from_secs(2),
        );
        let table = report.table();
        let rows: Vec<Vec<&str>> = table
            .lines()
            .map(|l| l.split_whitespace().collect())
            .collect();
        let find = |role: &str| rows.iter().find(|r| r.first() == Some(&role)).unwrap();
        assert_eq!(
            find("orders")[..5],
            ["orders", "ord-1", "http://127.0.0.1:1/ord-1", "1", "ready"]
        );
        assert!(find("orders").contains(&"10.0"), "{table}");
        assert_eq!(
            find("gateway")[..4],
            ["gateway", "gw-1", "http://127.0.0.1:1/gw-1", "-"]
        );
        assert_eq!(find("payments")[1], "-");
        assert!(table.contains("2 instances, 1 ready"), "{table}");
        assert!(
            table.contains("gw-1: no figures: GET x: refused"),
            "{table}"
        );
        let json = serde_json::to_value(&report).unwrap();
        assert_eq!(json["instances"][0]["role"], "gateway");
        assert_eq!(
            json["instances"][0]["requests_per_s"],
            serde_json::Value::Null
        );
        assert_eq!(json["roles"][2]["instances"], 0);
    }
}
