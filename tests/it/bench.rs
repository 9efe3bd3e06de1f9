//! `svc bench` against a real cluster: it places orders, prints orders/s and latency,
//! and a table of what each role spent per confirmed order, with a CPU figure for every
//! role (read from every instance's and registry's `/metrics` before and after), and it
//! reuses its fixed products, so a second run adds none to the catalog.

use std::time::Duration;

use crate::harness::*;

/// `svc bench` for a short run against `cluster`, as an operator runs it.
async fn bench(cluster: &Cluster) -> Finished {
    let mut cmd = svc_command();
    cmd.arg("bench")
        .args(["--gateway", &cluster.gateway_urls()[0]])
        .args(["--api-key", TEST_API_KEY])
        .args(["--registry", &cluster.registry_urls()])
        .args(["--concurrency", "4", "--duration", "1500ms"]);
    tokio::task::spawn_blocking(move || run_to_exit(cmd, Duration::from_secs(60)))
        .await
        .unwrap()
}

/// The SKUs of the whole catalog, in listing order.
async fn catalog_skus(cluster: &Cluster) -> Vec<String> {
    let page = get_json(&format!("{}/products?limit=100", cluster.api)).await;
    assert!(page["next_after"].is_null(), "more than one page: {page}");
    page["products"]
        .as_array()
        .unwrap_or_else(|| panic!("no products in {page}"))
        .iter()
        .map(|p| str_of(p, "sku").to_string())
        .collect()
}

/// The cells of the cost table's row for `role`, after the role's name.
fn row<'t>(stdout: &'t str, role: &str) -> Vec<&'t str> {
    let table: Vec<&str> = stdout
        .lines()
        .skip_while(|l| !l.starts_with("ROLE "))
        .collect();
    assert!(!table.is_empty(), "no cost table:\n{stdout}");
    let line = table
        .iter()
        .find(|l| {
            l.strip_prefix(role)
                .is_some_and(|rest| rest.starts_with("  "))
        })
        .unwrap_or_else(|| panic!("no row for {role}:\n{stdout}"));
    line[role.len()..].split_whitespace().collect()
}

fn number(cell: &str, what: &str, stdout: &str) -> f64 {
    cell.parse()
        .unwrap_or_else(|_| panic!("{what}: `{cell}` is not a number:\n{stdout}"))
}

#[tokio::test]
async fn bench_prints_cost_per_role_and_reuses_its_products() {
    let cluster = Topology::shop().sharded(2).start().await;
    create_product_at(&cluster.client, &cluster.api, "tea", 450, 100).await;

    let first = bench(&cluster).await;
    assert_eq!(first.code(), Some(0), "{first:?}");
    let out = &first.stdout;
    let confirmed = out
        .lines()
        .find_map(|l| l.strip_prefix("confirmed "))
        .and_then(|rest| rest.split_whitespace().next())
        .map(|n| number(n, "confirmed", out))
        .unwrap_or_else(|| panic!("no confirmed count:\n{out}"));
    assert!(confirmed > 0.0, "{out}");
    assert!(out.contains("orders/s"), "{out}");
    assert!(out.contains("p50 ") && out.contains("p99 "), "{out}");

    let mut roles_cpu = 0.0;
    for role in all_roles() {
        let cells = row(out, &role);
        let instances = if role == "registry" {
            cluster.registries.len() as u32
        } else {
            cluster.count(&role)
        };
        // Every instance measured: the count alone, then CPU and syncs per order.
        assert_eq!(cells[0], instances.to_string(), "{role}:\n{out}");
        let cpu = number(cells[1], &format!("{role} CPU ms/order"), out);
        assert!(cpu > 0.0, "{role} used no CPU:\n{out}");
        roles_cpu += cpu;
        if cells[2] != "-" {
            number(cells[2], &format!("{role} syncs/order"), out);
        }
    }
    let total = row(out, "all processes");
    assert_eq!(total[0], (cluster.members.len() + 1).to_string(), "{out}");
    let total_cpu = number(total[1], "total CPU ms/order", out);
    // The total is the sum of the rows (each printed to 0.01).
    assert!(
        (total_cpu - roles_cpu).abs() < 0.05,
        "{total_cpu} vs {roles_cpu}:\n{out}"
    );
    assert!(!out.contains("not measured"), "{out}");

    let bench_skus: Vec<String> = (0..16).map(|i| format!("zz-bench-{i:02}")).collect();
    let after_first = catalog_skus(&cluster).await;
    let mut expected = vec!["tea".to_string()];
    expected.extend(bench_skus);
    assert_eq!(after_first, expected);

    let second = bench(&cluster).await;
    assert_eq!(second.code(), Some(0), "{second:?}");
    assert_eq!(
        catalog_skus(&cluster).await,
        after_first,
        "{}",
        second.stdout
    );
}
