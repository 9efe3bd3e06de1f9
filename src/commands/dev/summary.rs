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
    // The URLs worth curling: the registry's catalog and each edge's readiness.
    let mut urls = vec![(
        "registry".to_string(),
        plan.registry_url.clone(),
        format!("{}/v1/catalog", plan.registry_url),
    )];
    for (spec, line) in ready.iter().filter(|(spec, _)| spec.edge) {
        urls.push((
            spec.instance_id.clone(),
            line.address.clone(),
            format!("{}/health/ready", line.address),
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
        "  registry page: {}/ui    status: svc status    logs: {}/*.jsonl (svc trace <trace-id>)",
        plan.registry_url,
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
    use crate::platform::config::LogFormat;
    use crate::roles;

    #[test]
    fn one_row_per_instance_then_timing_and_urls() {
        let args = DevArgs {
            replicas: vec!["gateway=2".to_string()],
            data_dir: PathBuf::from("data/dev"),
            config: None,
            registry_port: 7700,
            gateway_port: 8080,
            log_format: LogFormat::Pretty,
        };
        let plan = super::super::plan::build(&args, &roles::catalog()).unwrap();
        let lines: Vec<ReadyLine> = plan
            .all()
            .map(|s| ReadyLine {
                role: s.role.clone(),
                instance: s.instance_id.clone(),
                address: format!("http://127.0.0.1:{}", s.port),
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
            text.contains("curl -s http://127.0.0.1:7700/v1/catalog"),
            "{text}"
        );
        assert!(
            text.contains("curl -s http://127.0.0.1:8081/health/ready"),
            "{text}"
        );
        assert!(text.contains("data/dev/orders-orders-0.redb"), "{text}");
        assert!(text.contains("http://127.0.0.1:7700/ui"), "{text}");
        assert!(text.contains("data/dev/logs/*.jsonl"), "{text}");
    }
}
