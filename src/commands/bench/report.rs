//! What `svc bench` prints: throughput and latency of the confirmed orders, then a
//! table of what each role spent per confirmed order, with a total over all processes.
//! A figure that could not be measured is `-`, never zero.

use std::fmt::Write as _;
use std::time::Duration;

use super::costs::{Costs, RoleCost};
use super::load::Outcome;

/// Orders per second and the latency percentiles, two lines.
pub fn throughput(outcome: &Outcome) -> String {
    let ms = |d: Option<Duration>| {
        d.map_or("-".to_string(), |d| {
            format!("{:.1} ms", d.as_secs_f64() * 1000.0)
        })
    };
    format!(
        "confirmed {} in {:.1}s = {:.1} orders/s; cancelled {}, still pending {}, errors {}\n\
         latency of confirmed orders: p50 {}  p99 {}  max {}\n",
        outcome.confirmed,
        outcome.wall.as_secs_f64(),
        outcome.orders_per_s(),
        outcome.cancelled,
        outcome.pending,
        outcome.errors,
        ms(outcome.latency(0.50)),
        ms(outcome.latency(0.99)),
        ms(outcome.latency(1.0)),
    )
}

/// The per-role table; the commands/commit column only when some role counts commands.
pub fn cost_table(costs: &Costs) -> String {
    let with_commands = costs.roles.iter().any(|r| r.commands_per_commit.is_some());
    let mut headers = vec!["ROLE", "INSTANCES", "CPU MS/ORDER", "SYNCS/ORDER"];
    if with_commands {
        headers.push("COMMANDS/COMMIT");
    }
    let figure =
        |x: Option<f64>, decimals: usize| x.map_or("-".into(), |x| format!("{x:.decimals$}"));
    let row = |r: &RoleCost| {
        let mut cells = vec![
            r.role.clone(),
            if r.measured == r.instances {
                r.instances.to_string()
            } else {
                format!("{} of {}", r.measured, r.instances)
            },
            figure(r.cpu_ms_per_order, 2),
            figure(r.syncs_per_order, 2),
        ];
        if with_commands {
            cells.push(figure(r.commands_per_commit, 1));
        }
        cells
    };
    let header: Vec<String> = headers.iter().map(|h| h.to_string()).collect();
    let rows: Vec<Vec<String>> = std::iter::once(header)
        .chain(costs.roles.iter().map(row))
        .chain(std::iter::once(row(&costs.total)))
        .collect();
    let mut widths = vec![0; headers.len()];
    for r in &rows {
        for (w, cell) in widths.iter_mut().zip(r) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let mut out = String::from(
        "per confirmed order, by role (CPU: user + system time; syncs: commits that end in \
         an fdatasync):\n",
    );
    for r in &rows {
        let line: Vec<String> = r
            .iter()
            .zip(&widths)
            .map(|(cell, w)| format!("{cell:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    for (instance, why) in &costs.unmeasured {
        let _ = writeln!(out, "  {instance}: not measured: {why}");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::bench::costs::ALL_PROCESSES;

    fn cost(
        role: &str,
        instances: usize,
        measured: usize,
        cpu: Option<f64>,
        syncs: Option<f64>,
        commands: Option<f64>,
    ) -> RoleCost {
        RoleCost {
            role: role.into(),
            instances,
            measured,
            cpu_ms_per_order: cpu,
            syncs_per_order: syncs,
            commands_per_commit: commands,
        }
    }

    fn cells<'t>(table: &'t str, role: &str) -> Vec<&'t str> {
        let line = table
            .lines()
            .find(|l| l.starts_with(role))
            .unwrap_or_else(|| panic!("no {role} row:\n{table}"));
        line[role.len()..].split_whitespace().collect()
    }

    #[test]
    fn the_table_shows_every_role_the_total_and_dashes_for_the_unknown() {
        let mut costs = Costs {
            roles: vec![
                cost("registry", 2, 1, Some(0.012), None, None),
                cost("gateway", 1, 1, Some(0.9), None, None),
                cost("orders", 2, 2, Some(1.6), Some(5.3), None),
            ],
            total: cost(ALL_PROCESSES, 5, 4, Some(2.512), Some(5.3), None),
            unmeasured: vec![("https://reg-1".into(), "GET x: refused".into())],
        };
        let table = cost_table(&costs);
        assert!(table.lines().nth(1).unwrap().starts_with("ROLE"), "{table}");
        assert!(!table.contains("COMMANDS/COMMIT"), "{table}");
        assert_eq!(cells(&table, "registry"), ["1", "of", "2", "0.01", "-"]);
        assert_eq!(cells(&table, "gateway"), ["1", "0.90", "-"]);
        assert_eq!(cells(&table, "orders"), ["2", "1.60", "5.30"]);
        assert_eq!(
            cells(&table, ALL_PROCESSES),
            ["4", "of", "5", "2.51", "5.30"]
        );
        assert!(
            table.contains("https://reg-1: not measured: GET x: refused"),
            "{table}"
        );

        costs.roles[2].commands_per_commit = Some(12.3);
        let table = cost_table(&costs);
        assert!(table.contains("COMMANDS/COMMIT"), "{table}");
        assert_eq!(cells(&table, "orders"), ["2", "1.60", "5.30", "12.3"]);
        assert_eq!(cells(&table, "gateway"), ["1", "0.90", "-", "-"]);
    }

    #[test]
    fn throughput_names_rate_and_percentiles() {
        let outcome = Outcome {
            wall: Duration::from_secs(4),
            confirmed: 3,
            cancelled: 1,
            latencies: vec![
                Duration::from_millis(10),
                Duration::from_millis(20),
                Duration::from_millis(30),
            ],
            ..Outcome::default()
        };
        let text = throughput(&outcome);
        assert!(
            text.contains("confirmed 3 in 4.0s = 0.8 orders/s; cancelled 1"),
            "{text}"
        );
        assert!(
            text.contains("p50 20.0 ms  p99 30.0 ms  max 30.0 ms"),
            "{text}"
        );
        assert!(throughput(&Outcome::default()).contains("p50 -  p99 -"));
    }
}
