//! Roles from files: a role svc does not contain (`loyalty`, from `roles.d/loyalty.yaml`)
//! joins the system through its manifest alone.
//!
//! * `svc roles` and `svc config check` list it; a file that clashes with a built-in
//!   role stops them, naming the file and the key; `svc run --role loyalty` says it
//!   needs `--app`; `svc certs issue --role loyalty` makes its certificate.
//! * In a running cluster: the registry admits a loyalty instance (with a loyalty
//!   certificate) and refuses an unknown role; inventory lets loyalty read a product
//!   only because `roles.extra_callers` says so (200 there, 403 elsewhere); and orders'
//!   outbox relay delivers `order.confirmed` to the registered loyalty instance.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::*;
use serde_json::json;
use svc_platform::tls::pki::{self, IssueRequest};

const LOYALTY: &str = "\
name: loyalty
description: Gives customers points for confirmed orders.
port: 0
stateful: false
registers: true
calls: [inventory]
publishes: []
consumes: [order.confirmed]
endpoints:
  POST /v1/events: [orders]
  GET /v1/points/{customer}: [gateway, operator]
";

/// `<sandbox>/roles.d/loyalty.yaml`, and a config naming that directory and letting
/// loyalty read one product at inventory; returns (roles dir, config file).
fn loyalty_config(sandbox: &Sandbox) -> (PathBuf, PathBuf) {
    let dir = sandbox.dir.path().join("roles.d");
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("loyalty.yaml"), LOYALTY).unwrap();
    let config = sandbox.write_file(
        "svc.yaml",
        &format!(
            "roles:\n  dir: {}\n  extra_callers:\n    inventory:\n      \"GET /v1/products/{{sku}}\": [loyalty]\n",
            dir.display()
        ),
    );
    (dir, config)
}

fn svc(args: &[&str], paths: &[&Path]) -> Finished {
    let mut cmd = svc_command();
    cmd.args(args).args(paths);
    run_to_exit(cmd, EXIT_TIMEOUT)
}

#[test]
fn the_commands_list_a_role_from_a_file_and_refuse_a_bad_one() {
    let sandbox = Sandbox::new();
    let (dir, config) = loyalty_config(&sandbox);

    let out = svc(&["roles", "--config"], &[&config]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let rows: Vec<&str> = out
        .stdout
        .lines()
        .filter(|l| l.starts_with("loyalty "))
        .collect();
    assert!(
        rows.iter().any(|r| r.contains("order.confirmed")),
        "{}",
        out.stdout
    );
    assert!(
        rows.iter().any(|r| r.contains("loyalty.yaml")),
        "{}",
        out.stdout
    );
    // The extended caller, marked; the endpoints not extended keep their callers.
    let extended = out
        .stdout
        .lines()
        .find(|l| l.starts_with("inventory") && l.contains("GET /v1/products/{sku}"))
        .unwrap_or_default();
    assert!(
        extended.ends_with("gateway, operator, +loyalty"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.lines().any(|l| l.starts_with("inventory")
        && l.contains("POST /v1/products ")
        && l.contains("loyalty")));
    // Without the config only the built-in roles.
    let out = svc(&["roles"], &[]);
    assert!(!out.stdout.contains("loyalty"), "{}", out.stdout);

    let out = svc(&["config", "check", "--config"], &[&config]);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(
        out.stdout.contains("role from a file: loyalty"),
        "{}",
        out.stdout
    );

    let out = svc(&["run", "--role", "loyalty", "--config"], &[&config]);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("--app"), "{}", out.stderr);
    assert!(out.stderr.contains("loyalty.yaml"), "{}", out.stderr);

    // A file that clashes with a built-in role: the file and the key.
    let orders = dir.join("orders.yaml");
    std::fs::write(&orders, LOYALTY.replace("name: loyalty", "name: orders")).unwrap();
    for args in [&["config", "check", "--config"][..], &["roles", "--config"]] {
        let out = svc(args, &[&config]);
        assert_eq!(out.code(), Some(2), "{out:?}");
        let want = format!(
            "{}: key `name`: role `orders` is built in",
            orders.display()
        );
        assert!(out.stderr.contains(&want), "{}", out.stderr);
    }
}

#[test]
fn certs_are_issued_for_a_role_from_a_file() {
    let sandbox = Sandbox::new();
    let (dir, _) = loyalty_config(&sandbox);
    let pki_dir = own_pki(&sandbox);
    let issue = [
        "certs",
        "issue",
        "--role",
        "loyalty",
        "--host",
        "127.0.0.1",
        "--dir",
    ];

    let out = svc(&issue, &[&pki_dir]);
    assert_eq!(out.code(), Some(2), "not a role without its file: {out:?}");
    assert!(
        out.stderr.contains("unknown role `loyalty`"),
        "{}",
        out.stderr
    );

    let mut cmd = svc_command();
    cmd.args(issue).arg(&pki_dir).arg("--roles-dir").arg(&dir);
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("role:      loyalty"), "{}", out.stdout);
    assert!(pki_dir.join("loyalty.crt").exists() && pki_dir.join("loyalty.key").exists());
}

/// `cmd` with the roles directory and the config of [`loyalty_config`].
fn with_roles(mut cmd: std::process::Command, config: &Path) -> std::process::Command {
    cmd.arg("--config").arg(config);
    cmd
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_role_from_a_file_registers_calls_what_it_is_granted_and_gets_its_events() {
    let sandbox = Sandbox::new();
    let (dir, config) = loyalty_config(&sandbox);
    let pki_dir = own_pki(&sandbox);
    pki::issue(&pki_dir, &IssueRequest::new("loyalty", &["127.0.0.1"])).unwrap();
    pki::issue(&pki_dir, &IssueRequest::new("billing", &["127.0.0.1"])).unwrap();

    let mut registry_cmd = sandbox.registry_command(0);
    registry_cmd.arg("--roles-dir").arg(&dir);
    let registry = sandbox.start_cmd(registry_cmd, "registry", "reg-0");
    let start = |role: &str, id: &str| {
        let cmd = with_roles(sandbox.run_command(role, id, &registry.url), &config);
        sandbox.start_cmd(cmd, role, id)
    };
    let inventory = start("inventory", "inv-0");
    let payments = start("payments", "pay-0");
    let orders = start("orders", "ord-0");
    wait_registered(&registry, &[&inventory, &payments, &orders]).await;

    // The registry admits loyalty, with a loyalty certificate, and no unknown role.
    let mut loyalty = FakeInstance::start(&pki_dir, "loyalty");
    let (status, body) = loyalty.register(&pki_dir, &registry.url, "loyalty-0").await;
    assert_eq!(status, 200, "{body}");
    let mut billing = FakeInstance::start(&pki_dir, "billing");
    let (status, body) = billing.register(&pki_dir, &registry.url, "billing-0").await;
    assert_eq!(status, 403, "an unknown role: {body}");
    let listed = catalog(&registry).await;
    let roles: Vec<String> = members(&listed)
        .into_iter()
        .map(|(role, _, _)| role)
        .collect();
    assert!(roles.contains(&"loyalty".to_string()), "{listed}");
    assert!(!roles.contains(&"billing".to_string()), "{listed}");

    // Inventory: loyalty reads a product (granted by roles.extra_callers), nothing else.
    let sku = "tea-1";
    let res = post_json_as(
        "gateway",
        &format!("{}/v1/products", inventory.url),
        &product(sku),
    )
    .await;
    assert_eq!(
        res.status(),
        201,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let as_loyalty = client_of(&pki_dir, "loyalty", TEST_API_KEY);
    let res = as_loyalty
        .get(format!("{}/v1/products/{sku}", inventory.url))
        .send()
        .await
        .unwrap();
    assert_eq!(
        res.status(),
        200,
        "{}",
        res.text().await.unwrap_or_default()
    );
    let res = as_loyalty
        .get(format!("{}/v1/products", inventory.url))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "loyalty lists products").await;
    let res = as_loyalty
        .post(format!("{}/v1/products", inventory.url))
        .json(&product("tea-2"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "loyalty creates a product").await;

    // Orders' relay delivers order.confirmed to the loyalty instance.
    wait_peers(&orders, &[&inventory, &payments]).await;
    let body = order_body(&[(sku, 1)], Some("4242424242424242"));
    let placed = place_order_at(
        &client_as("gateway"),
        &format!("{}/v1", orders.url),
        &body,
        None,
    )
    .await;
    assert!(matches!(placed.status, 201 | 202), "{placed:?}");
    let id = placed.id();
    let (event, _) = wait_for(
        "order.confirmed at loyalty",
        Duration::from_secs(20),
        || async {
            let received = loyalty.received();
            received
                .iter()
                .flat_map(|(path, body)| match body {
                    serde_json::Value::Array(events) => {
                        events.iter().map(|e| (path.clone(), e.clone())).collect()
                    }
                    one => vec![(path.clone(), one.clone())],
                })
                .find(|(_, e)| e["kind"] == "order.confirmed" && e["key"] == json!(id))
                .ok_or_else(|| format!("received so far: {received:?}"))
        },
    )
    .await;
    assert_eq!(event.0, "/v1/events");
    assert!(billing.received().is_empty());
}
