//! What a run cost each role: every process of the cluster (the configured registries
//! and every instance in the catalog) is scraped before and after the load, and the
//! differences of its counters are summed per role and divided by confirmed orders.
//!
//! - CPU: `process_cpu_seconds_total` (user + system time of the whole process).
//! - Syncs: `svc_store_commits_total{durability="immediate"}`: each immediate commit
//!   ends in one fdatasync. Commands per commit: `svc_store_commands_total` (every
//!   outcome) over `svc_store_commits_total` (every durability).
//!
//! A counter an instance does not export is unknown (`None`, `-` in the table), never
//! zero; a role's figure is known only if every measured instance of the role exports
//! it. A counter that exists only after the run (a labelled counter appears at its first
//! increment) counted from zero; one that went down (a restart) counts what the new
//! process did. Work that outlasts the run (events still being delivered) is not in it.

use futures::future::join_all;

use crate::commands::status::prom::Sample;
use crate::commands::status::scrape_samples;

pub const CPU_SECONDS: &str = "process_cpu_seconds_total";
pub const STORE_COMMITS: &str = "svc_store_commits_total";
pub const STORE_COMMANDS: &str = "svc_store_commands_total";

/// One process to measure.
#[derive(Clone, Debug)]
pub struct Target {
    pub role: String,
    /// Its instance id, or a registry's URL.
    pub name: String,
    pub address: String,
}

/// The counters of one scrape, or of the difference of two.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Counters {
    pub cpu_seconds: Option<f64>,
    /// Commits that ended in a sync.
    pub immediate_commits: Option<f64>,
    /// Commits of every durability.
    pub commits: Option<f64>,
    pub commands: Option<f64>,
}

impl Counters {
    pub fn from_samples(samples: &[Sample]) -> Counters {
        let total = |keep: &dyn Fn(&Sample) -> bool| -> Option<f64> {
            samples
                .iter()
                .filter(|s| keep(s))
                .map(|s| s.value)
                .reduce(|a, b| a + b)
        };
        Counters {
            cpu_seconds: total(&|s| s.name == CPU_SECONDS),
            immediate_commits: total(&|s| {
                s.name == STORE_COMMITS
                    && s.labels.get("durability").map(String::as_str) == Some("immediate")
            }),
            commits: total(&|s| s.name == STORE_COMMITS),
            commands: total(&|s| s.name == STORE_COMMANDS),
        }
    }

    /// What was counted between `earlier` and `self` (see the module docs).
    pub fn since(&self, earlier: &Counters) -> Counters {
        let delta = |after: Option<f64>, before: Option<f64>| {
            let after = after?;
            Some(match before {
                Some(before) if before <= after => after - before,
                _ => after,
            })
        };
        Counters {
            cpu_seconds: delta(self.cpu_seconds, earlier.cpu_seconds),
            immediate_commits: delta(self.immediate_commits, earlier.immediate_commits),
            commits: delta(self.commits, earlier.commits),
            commands: delta(self.commands, earlier.commands),
        }
    }
}

/// Scrapes every target at once.
pub async fn scrape_all(
    http: &reqwest::Client,
    targets: &[Target],
) -> Vec<Result<Counters, String>> {
    join_all(targets.iter().map(|t| async move {
        scrape_samples(http, &t.address)
            .await
            .map(|samples| Counters::from_samples(&samples))
    }))
    .await
}

/// One role's cost, or the whole cluster's.
#[derive(Clone, Debug, PartialEq)]
pub struct RoleCost {
    pub role: String,
    pub instances: usize,
    /// Instances scraped both before and after: the figures cover these.
    pub measured: usize,
    pub cpu_ms_per_order: Option<f64>,
    pub syncs_per_order: Option<f64>,
    pub commands_per_commit: Option<f64>,
}

/// Every role's cost, the total, and the processes that could not be measured.
#[derive(Clone, Debug, PartialEq)]
pub struct Costs {
    pub roles: Vec<RoleCost>,
    pub total: RoleCost,
    /// (instance, why) for each process without figures.
    pub unmeasured: Vec<(String, String)>,
}

/// The name of the total row.
pub const ALL_PROCESSES: &str = "all processes";

impl Costs {
    /// `before` and `after` are the scrapes of `targets`, in their order; roles are
    /// listed in `role_order`, then any other by name.
    pub fn new(
        targets: &[Target],
        before: Vec<Result<Counters, String>>,
        after: Vec<Result<Counters, String>>,
        confirmed: u64,
        role_order: &[String],
    ) -> Costs {
        let mut unmeasured = Vec::new();
        let mut used: Vec<(&Target, Option<Counters>)> = Vec::new();
        for ((target, before), after) in targets.iter().zip(before).zip(after) {
            match (before, after) {
                (Ok(b), Ok(a)) => used.push((target, Some(a.since(&b)))),
                (Err(e), _) | (_, Err(e)) => {
                    unmeasured.push((target.name.clone(), e));
                    used.push((target, None));
                }
            }
        }
        let mut roles: Vec<&str> = used.iter().map(|(t, _)| t.role.as_str()).collect();
        roles.sort_by_key(|r| {
            (
                role_order.iter().position(|o| o == r).unwrap_or(usize::MAX),
                r.to_string(),
            )
        });
        roles.dedup();
        let per_order = |x: Option<f64>| x.filter(|_| confirmed > 0).map(|x| x / confirmed as f64);
        let cost = |role: &str, of: &[&(&Target, Option<Counters>)]| {
            let measured: Vec<&Counters> = of.iter().filter_map(|(_, c)| c.as_ref()).collect();
            let commits = sum_if_all(&measured, |c| c.commits);
            let commands = sum_if_all(&measured, |c| c.commands);
            RoleCost {
                role: role.to_string(),
                instances: of.len(),
                measured: measured.len(),
                cpu_ms_per_order: per_order(sum_if_all(&measured, |c| c.cpu_seconds))
                    .map(|s| s * 1000.0),
                syncs_per_order: per_order(sum_if_all(&measured, |c| c.immediate_commits)),
                commands_per_commit: commands
                    .zip(commits)
                    .filter(|(_, commits)| *commits > 0.0)
                    .map(|(commands, commits)| commands / commits),
            }
        };
        let roles: Vec<RoleCost> = roles
            .into_iter()
            .map(|role| {
                let of: Vec<&(&Target, Option<Counters>)> =
                    used.iter().filter(|(t, _)| t.role == role).collect();
                cost(role, &of)
            })
            .collect();
        let known =
            |f: fn(&RoleCost) -> Option<f64>| roles.iter().filter_map(f).reduce(|a, b| a + b);
        let measured: Vec<&Counters> = used.iter().filter_map(|(_, c)| c.as_ref()).collect();
        // Over the processes that count both.
        let (commands, commits) = measured
            .iter()
            .filter_map(|c| c.commands.zip(c.commits))
            .fold((0.0, 0.0), |(a, b), (x, y)| (a + x, b + y));
        let total = RoleCost {
            role: ALL_PROCESSES.to_string(),
            instances: used.len(),
            measured: measured.len(),
            cpu_ms_per_order: known(|r| r.cpu_ms_per_order),
            syncs_per_order: known(|r| r.syncs_per_order),
            commands_per_commit: (commits > 0.0).then(|| commands / commits),
        };
        Costs {
            roles,
            total,
            unmeasured,
        }
    }
}

/// The sum of `field` over `counters`: `None` if there are none or one lacks it.
fn sum_if_all(counters: &[&Counters], field: impl Fn(&Counters) -> Option<f64>) -> Option<f64> {
    counters
        .iter()
        .map(|c| field(c))
        .try_fold(None, |sum: Option<f64>, x| {
            x.map(|x| Some(sum.unwrap_or(0.0) + x))
        })
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::commands::status::prom::parse;

    const STATEFUL: &str = r#"# TYPE process_cpu_seconds_total counter
process_cpu_seconds_total 1.5
svc_store_commits_total{durability="immediate"} 100
svc_store_commits_total{durability="deferred"} 20
svc_store_commands_total{outcome="applied"} 300
svc_store_commands_total{outcome="refused"} 60
"#;

    fn target(role: &str, name: &str) -> Target {
        Target {
            role: role.into(),
            name: name.into(),
            address: format!("https://127.0.0.1:1/{name}"),
        }
    }

    fn counters(
        cpu: f64,
        immediate: Option<f64>,
        commits: Option<f64>,
        commands: Option<f64>,
    ) -> Counters {
        Counters {
            cpu_seconds: Some(cpu),
            immediate_commits: immediate,
            commits,
            commands,
        }
    }

    #[test]
    fn reads_cpu_syncs_and_commands_and_leaves_missing_counters_unknown() {
        let c = Counters::from_samples(&parse(STATEFUL));
        assert_eq!(c, counters(1.5, Some(100.0), Some(120.0), Some(360.0)));
        let stateless = Counters::from_samples(&parse("process_cpu_seconds_total 0.25\n"));
        assert_eq!(stateless, counters(0.25, None, None, None));
        assert_eq!(Counters::from_samples(&[]), Counters::default());
    }

    #[test]
    fn a_difference_counts_from_zero_what_appeared_and_after_a_restart() {
        let before = counters(10.0, None, Some(5.0), None);
        let after = counters(12.5, Some(40.0), Some(45.0), None);
        assert_eq!(
            after.since(&before),
            counters(2.5, Some(40.0), Some(40.0), None)
        );
        // A restarted process: its counters start again.
        let restarted = counters(0.5, Some(3.0), Some(3.0), None);
        assert_eq!(
            restarted.since(&after),
            counters(0.5, Some(3.0), Some(3.0), None)
        );
    }

    #[test]
    fn costs_are_summed_per_role_and_divided_by_confirmed_orders() {
        let targets = [
            target("orders", "orders-0"),
            target("orders", "orders-1"),
            target("gateway", "gateway-0"),
            target("registry", "https://reg"),
            target("inventory", "inventory-0"),
        ];
        let zero = || Ok(counters(0.0, Some(0.0), Some(0.0), Some(0.0)));
        let before = vec![
            zero(),
            zero(),
            Ok(counters(0.0, None, None, None)),
            zero(),
            zero(),
        ];
        let after = vec![
            Ok(counters(1.0, Some(300.0), Some(300.0), Some(600.0))),
            Ok(counters(1.0, Some(230.0), Some(230.0), Some(460.0))),
            Ok(counters(0.5, None, None, None)),
            Err("GET https://reg/metrics: refused".to_string()),
            Ok(counters(0.4, Some(200.0), Some(100.0), None)),
        ];
        let order = ["registry", "gateway", "orders", "inventory"].map(String::from);
        let costs = Costs::new(&targets, before, after, 100, &order);
        let names: Vec<&str> = costs.roles.iter().map(|r| r.role.as_str()).collect();
        assert_eq!(names, ["registry", "gateway", "orders", "inventory"]);
        let role = |name: &str| costs.roles.iter().find(|r| r.role == name).unwrap();
        assert_eq!(
            role("orders"),
            &RoleCost {
                role: "orders".into(),
                instances: 2,
                measured: 2,
                cpu_ms_per_order: Some(20.0),
                syncs_per_order: Some(5.3),
                commands_per_commit: Some(2.0),
            }
        );
        assert_eq!(role("gateway").cpu_ms_per_order, Some(5.0));
        assert_eq!(role("gateway").syncs_per_order, None);
        assert_eq!(
            (role("registry").measured, role("registry").cpu_ms_per_order),
            (0, None)
        );
        assert_eq!(role("inventory").syncs_per_order, Some(2.0));
        assert_eq!(role("inventory").commands_per_commit, None);
        assert_eq!(costs.total.role, ALL_PROCESSES);
        assert_eq!((costs.total.instances, costs.total.measured), (5, 4));
        let cpu = costs.total.cpu_ms_per_order.unwrap();
        assert!((cpu - 29.0).abs() < 1e-9, "{cpu}");
        assert_eq!(costs.total.syncs_per_order, Some(7.3));
        // Inventory counts no commands: the total is over the orders instances alone.
        assert_eq!(costs.total.commands_per_commit, Some(2.0));
        assert_eq!(
            costs.unmeasured,
            [(
                "https://reg".to_string(),
                "GET https://reg/metrics: refused".to_string()
            )]
        );
        // Without a confirmed order nothing is per order.
        let none = Costs::new(&targets[..1], vec![zero()], vec![zero()], 0, &order);
        assert_eq!(none.roles[0].cpu_ms_per_order, None);
    }
}
