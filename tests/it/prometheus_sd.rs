//! Prometheus finds every instance through the registry: `GET /v1/prometheus/targets`
//! answers in the `http_sd` format with every registered instance and its labels, and
//! the example scrape configuration (`config/prometheus-example.yml`) passes
//! `promtool check config` and, pointed at a real registry with the test PKI,
//! `promtool check service-discovery` finds the same instances over mutual TLS.
//!
//! The promtool half needs `promtool` (Debian: `apt-get install -y prometheus`); without
//! it that half is skipped with a message unless `SVC_REQUIRE_PROMTOOL` is set.

use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::harness::tools::find_tool;
use crate::harness::*;

/// `host:port` of a base URL.
fn host_port(url: &str) -> &str {
    url.split_once("://").map_or(url, |(_, rest)| rest)
}

/// The target group whose target is `svc`'s address.
fn group_of<'a>(groups: &'a [Value], svc: &Svc) -> &'a Value {
    groups
        .iter()
        .find(|g| g["targets"][0] == host_port(&svc.internal_url))
        .unwrap_or_else(|| panic!("no target for {} in {groups:?}", svc.internal_url))
}

#[tokio::test]
async fn the_registry_lists_every_instance_for_prometheus() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let inventory = sandbox.start("inventory", "inv-1", &registry.url);
    let orders = sandbox.start("orders", "ord-1", &registry.url);
    let gateway = sandbox.start("gateway", "gw-1", &registry.url);
    wait_registered(&registry, &[&inventory, &orders, &gateway]).await;

    let url = format!("{}/v1/prometheus/targets", registry.url);
    let answer = get_json(&url).await;
    let groups = answer.as_array().expect("a JSON array").clone();
    assert_eq!(groups.len(), 3, "{answer}");
    for (svc, role, id) in [
        (&inventory, "inventory", "inv-1"),
        (&orders, "orders", "ord-1"),
        (&gateway, "gateway", "gw-1"),
    ] {
        let labels = &group_of(&groups, svc)["labels"];
        assert_eq!(labels["role"], role, "{labels}");
        assert_eq!(labels["instance_id"], id, "{labels}");
        assert_eq!(labels["__scheme__"], "https", "{labels}");
        assert_eq!(labels["__metrics_path__"], "/metrics", "{labels}");
        assert!(labels["version"].is_string(), "{labels}");
        assert!(labels.get("instance").is_none(), "{labels}");
    }
    let orders_labels = &group_of(&groups, &orders)["labels"];
    assert_eq!(orders_labels["shard"], "0", "{orders_labels}");
    let gateway_labels = &group_of(&groups, &gateway)["labels"];
    assert!(
        gateway_labels["__meta_svc_public_address"].is_string(),
        "{gateway_labels}"
    );

    // Only operators (Prometheus has an operator certificate) read it.
    let res = client_as("orders").get(&url).send().await.unwrap();
    assert_eq!(res.status(), 403);

    let Some(promtool) = find_tool(
        &["promtool"],
        "SVC_PROMTOOL",
        "SVC_REQUIRE_PROMTOOL",
        "apt-get install -y prometheus",
    ) else {
        return;
    };
    let config = example_config_for(&sandbox, host_port(&registry.url));
    let checked = promtool_output(&promtool, &["check", "config"], &config);
    assert!(checked.0, "promtool check config:\n{}", checked.1);

    // Prometheus' own discovery, through each http_sd_config of the example (all three
    // pointed at this registry), with the operator's certificate.
    let (ok, said) = promtool_output(
        &promtool,
        &["check", "service-discovery", "--timeout=5s"],
        &config,
    );
    assert!(ok, "promtool check service-discovery:\n{said}");
    let start = said
        .find('[')
        .unwrap_or_else(|| panic!("no JSON in:\n{said}"));
    let found: Vec<Value> = serde_json::from_str(&said[start..])
        .unwrap_or_else(|e| panic!("promtool's answer is not JSON ({e}):\n{said}"));
    for (svc, id) in [
        (&inventory, "inv-1"),
        (&orders, "ord-1"),
        (&gateway, "gw-1"),
    ] {
        let target = found
            .iter()
            .find(|t| t["labels"]["instance_id"] == id)
            .unwrap_or_else(|| panic!("{id} not discovered:\n{said}"));
        assert_eq!(
            target["labels"]["instance"],
            host_port(&svc.internal_url),
            "{target}"
        );
        assert_eq!(target["labels"]["job"], "svc", "{target}");
    }
}

/// The example scrape configuration with the test PKI's operator certificate as
/// Prometheus' and every registry URL pointing at `registry` (host:port).
fn example_config_for(sandbox: &Sandbox, registry: &str) -> std::path::PathBuf {
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/prometheus-example.yml");
    let pki = test_pki().display().to_string();
    let text = std::fs::read_to_string(example)
        .unwrap()
        .replace("/etc/prometheus/svc/ca.crt", &format!("{pki}/ca.crt"))
        .replace(
            "/etc/prometheus/svc/prometheus.",
            &format!("{pki}/operator."),
        );
    let text = ["vm1.example:7700", "vm2.example:7700", "vm3.example:7700"]
        .iter()
        .fold(text, |t, vm| t.replace(vm, registry));
    sandbox.write_file("prometheus.yml", &text)
}

/// Runs `promtool ARGS CONFIG [svc]`; whether it succeeded, and what it said.
fn promtool_output(promtool: &Path, args: &[&str], config: &Path) -> (bool, String) {
    let mut cmd = Command::new(promtool);
    cmd.args(args).arg(config);
    if args.contains(&"service-discovery") {
        cmd.arg("svc");
    }
    let out = cmd.output().expect("run promtool");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), said)
}
