//! The table `svc dev` prints on stdout once everything is up: where each instance
//! listens and keeps its state, how long start-up took, and what to curl.

use std::fmt::Write as _;
use std::time::Duration;

use super::plan::{InstanceSpec, Plan};
use super::ready::ReadyLine;

/// One row per instance of `plan`, with what its ready line reported.
pub fn render(plan: &Plan, ready: &[(&InstanceSpec, &ReadyLine)], took: Duration) -> String {
    let headers = ["ROLE", "INSTANCE", "ADDRESS", "STATE FILE"];
    let rows: Vec<[&str; 4]> = ready
        .iter()
        .map(|(spec, line)| {
            [
                spec.role.as_str(),
                spec.instance_id.as_str(),
                line.address.as_str(),
                line.store.as_str(),
            ]
        })
        .collect();
    let mut widths = headers.map(str::len);
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.len());
        }
    }

    let mut out = String::new();
    for row in std::iter::once(&headers).chain(&rows) {
        let line = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect::<Vec<_>>()
            .join("  ");
        let _ = writeln!(out, "{}", line.trim_end());
    }
    let _ = writeln!(
        out,
        "\nall {} instances ready in {:.2}s",
        rows.len(),
        took.as_secs_f64()
    );
    // The URLs worth curling: the registry's catalog (as the operator: mutual TLS) and
    // each edge's public API (with the dev API key).
    let operator = match &plan.tls_dir {
        Some(dir) => format!(
            "--cacert {0}/ca.crt --cert {0}/operator.crt --key {0}/operator.key ",
            dir.display()
        ),
        None => String::new(),
    };
    let mut urls = vec![(
        "registry".to_string(),
        plan.registry_url.clone(),
        format!("{operator}{}/v1/catalog", plan.registry_url),
    )];
    for (spec, line) in ready.iter().filter(|(spec, _)| spec.edge) {
        urls.push((
            spec.instance_id.clone(),
            line.public_url().to_string(),
            format!(
                "-H \"authorization: Bearer $(cat {})\" {}/api/v1/products",
                plan.api_key_file.display(),
                line.public_url()
            ),
        ));
    }
    let name_width = urls.iter().map(|u| u.0.len()).max().unwrap_or(0);
    let url_width = urls.iter().map(|u| u.1.len()).max().unwrap_or(0);
    for (name, url, example) in &urls {
        let _ = writeln!(
            out,
            "  {name:<name_width$}  {url:<url_width$}  try: curl -s {example}"
        );
    }
    let _ = writeln!(
        out,
        "  status: svc status{}    logs: {}/*.jsonl (svc trace <trace-id>)",
        plan.tls_dir
            .as_ref()
            .map(|d| format!(" --tls-dir {}", d.display()))
            .unwrap_or_else(|| " --insecure".to_string()),
        plan.logs_dir.display()
    );
    let _ = writeln!(out, "stop with Ctrl-C (or SIGTERM)");
    out
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;
    use crate::cli::DevArgs;
    use crate::roles;
    use svc_platform::config::LogFormat;

    #[test]
    fn one_row_per_instance_then_timing_and_urls() {
        let args = DevArgs {
            replicas: vec!["gateway=2".to_string()],
            data_dir: PathBuf::from("data/dev"),
            config: None,
            registry_port: 7700,
            gateway_port: 8080,
            log_format: LogFormat::Pretty,
            roles_dir: None,
        };
        let plan = super::super::plan::build(&args, &roles::built_in(), false).unwrap();
        let lines: Vec<ReadyLine> = plan
            .all()
            .map(|s| ReadyLine {
                role: s.role.clone(),
                instance: s.instance_id.clone(),
                address: format!("http://127.0.0.1:{}", s.port),
                public_address: None,
                store: format!("data/dev/{}-{}.redb", s.role, s.instance_id),
                registered_at: s.registers.then_some(1),
                pid: 1,
            })
            .collect();
        let rows: Vec<_> = plan.all().zip(&lines).collect();
        let text = render(&plan, &rows, Duration::from_millis(840));
        assert!(text.starts_with("ROLE"), "{text}");
        assert!(text.contains("all 7 instances ready in 0.84s"), "{text}");
        assert!(
            text.contains(
                "curl -s --cacert data/dev/tls/ca.crt --cert data/dev/tls/operator.crt \
                 --key data/dev/tls/operator.key https://127.0.0.1:7700/v1/catalog"
            ),
            "{text}"
        );
        assert!(
            text.contains(
                "curl -s -H \"authorization: Bearer $(cat data/dev/api-key)\" \
                 http://127.0.0.1:8081/api/v1/products"
            ),
            "{text}"
        );
        assert!(text.contains("data/dev/orders-orders-0.redb"), "{text}");
        assert!(text.contains("svc status --tls-dir data/dev/tls"), "{text}");
        assert!(text.contains("data/dev/logs/*.jsonl"), "{text}");
    }
}
