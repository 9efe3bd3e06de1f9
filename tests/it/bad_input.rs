//! Bad input of every kind ends in a clear answer: exit codes and messages for bad
//! flags, config files and state files; 4xx `problem+json` for bad HTTP requests, which
//! change nothing.

use std::time::Duration;

use crate::harness::*;
use serde_json::{json, Value};

fn assert_error_message(out: &Finished) {
    assert!(
        out.stderr.contains("svc: error:"),
        "expected a `svc: error:` message, got:\n{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn unknown_role_is_a_usage_error_listing_the_valid_roles() {
    let sandbox = Sandbox::new();
    let out = run_to_exit(
        sandbox.run_command("billing", "b-1", &dead_url()),
        EXIT_TIMEOUT,
    );
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert_error_message(&out);
    assert!(out.stderr.contains("billing"), "{}", out.stderr);
    for role in all_roles() {
        assert!(
            out.stderr.contains(role.as_str()),
            "`{role}` not listed:\n{}",
            out.stderr
        );
    }
    assert!(
        out.stdout.is_empty(),
        "no ready line expected: {}",
        out.stdout
    );
}

fn config_check(path: &std::path::Path) -> Finished {
    let mut cmd = svc_command();
    cmd.args(["config", "check", "--config"]).arg(path);
    run_to_exit(cmd, EXIT_TIMEOUT)
}

fn run_registry_with(sandbox: &Sandbox, config: &std::path::Path) -> Finished {
    let mut cmd = sandbox.run_command("registry", "reg-0", &dead_url());
    cmd.arg("--config").arg(config);
    run_to_exit(cmd, EXIT_TIMEOUT)
}

#[test]
fn good_config_passes_the_check() {
    let sandbox = Sandbox::new();
    let good = sandbox.registry_config();
    let out = config_check(&good);
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("ok"), "{out:?}");
}

#[test]
fn bad_duration_names_the_file_and_the_key() {
    let sandbox = Sandbox::new();
    let bad = sandbox.write_file("bad-duration.yaml", "registry:\n  lease_ttl: soon\n");

    let out = config_check(&bad);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert_error_message(&out);
    assert!(
        out.stderr.contains(&show(&bad)),
        "file not named:\n{}",
        out.stderr
    );
    assert!(out.stderr.contains("registry.lease_ttl"), "{}", out.stderr);

    let out = run_registry_with(&sandbox, &bad);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert_error_message(&out);
    assert!(out.stderr.contains(&show(&bad)), "{}", out.stderr);
    assert!(out.stderr.contains("registry.lease_ttl"), "{}", out.stderr);
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}

#[test]
fn unknown_config_key_is_named() {
    let sandbox = Sandbox::new();
    for (name, text, key) in [
        ("nested.yaml", "registry:\n  lease_tll: 2s\n", "lease_tll"),
        (
            "top.yaml",
            "registrys:\n  - http://127.0.0.1:7700\n",
            "registrys",
        ),
    ] {
        let file = sandbox.write_file(name, text);
        let out = config_check(&file);
        assert_eq!(out.code(), Some(2), "{name}: {out:?}");
        assert_error_message(&out);
        assert!(
            out.stderr.contains(key),
            "{name}: key not named:\n{}",
            out.stderr
        );
        assert!(out.stderr.contains(&show(&file)), "{name}:\n{}", out.stderr);

        let out = run_registry_with(&sandbox, &file);
        assert_eq!(out.code(), Some(2), "{name}: {out:?}");
        assert!(out.stderr.contains(key), "{name}:\n{}", out.stderr);
    }
}

#[test]
fn renew_interval_must_fit_in_the_ttl() {
    let sandbox = Sandbox::new();
    let file = sandbox.write_file(
        "slow.yaml",
        "registry:\n  lease_ttl: 1s\n  renew_interval: 1s\n",
    );
    let out = config_check(&file);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(
        out.stderr.contains("registry.renew_interval"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn second_instance_on_a_locked_state_file_fails_clearly() {
    let sandbox = Sandbox::new();
    let registry = dead_url();
    let first = sandbox.start("inventory", "inv-1", &registry);
    let store = sandbox.store_path("inventory", "inv-1");
    assert_eq!(first.ready["store"].as_str(), Some(show(&store).as_str()));

    let out = run_to_exit(
        sandbox.run_command("inventory", "inv-1", &registry),
        EXIT_TIMEOUT,
    );
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_error_message(&out);
    assert!(out.stderr.contains("locked"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&show(&store)),
        "path not named:\n{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);

    // The first one is unharmed.
    let ready = get_json(&format!("{}/health/ready", first.url)).await;
    assert_eq!(ready["status"], "ready");
}

#[test]
fn corrupt_state_file_fails_clearly_without_a_panic() {
    let sandbox = Sandbox::new();
    let store = sandbox.store_path("inventory", "inv-1");
    std::fs::create_dir_all(store.parent().unwrap()).unwrap();
    let garbage: Vec<u8> = (0..16384u32).map(|i| (i * 7 % 251) as u8).collect();
    std::fs::write(&store, &garbage).unwrap();

    let out = run_to_exit(
        sandbox.run_command("inventory", "inv-1", &dead_url()),
        EXIT_TIMEOUT,
    );
    assert_ne!(out.code(), Some(0), "{out:?}");
    assert!(out.code().is_some(), "killed by a signal: {out:?}");
    assert_error_message(&out);
    assert!(
        out.stderr.contains(&show(&store)),
        "path not named:\n{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
    // The file is left for the operator to inspect, not replaced.
    assert_eq!(std::fs::read(&store).unwrap(), garbage);
}

fn registration(role: &str, id: &str, address: &str) -> Value {
    json!({ "role": role, "instance_id": id, "address": address, "version": "1.0.0" })
}

#[tokio::test]
async fn malformed_registrations_are_refused_and_change_nothing() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let url = format!("{}/v1/instances", registry.url);
    let before = catalog(&registry).await;

    let raw: [(&str, &str, &str); 6] = [
        ("invalid JSON", "{\"role\": \"orders\",", "invalid JSON"),
        (
            "missing field",
            r#"{"role":"orders","instance_id":"o-1","version":"1"}"#,
            "address",
        ),
        (
            "unknown field",
            r#"{"role":"orders","instance_id":"o-1","address":"https://127.0.0.1:9","version":"1","colour":"red"}"#,
            "colour",
        ),
        (
            "wrong type",
            r#"{"role":7,"instance_id":"o-1","address":"https://127.0.0.1:9","version":"1"}"#,
            "invalid type",
        ),
        ("not an object", "[1,2,3]", "invalid JSON"),
        ("empty body", "", "JSON"),
    ];
    for (what, body, mention) in raw {
        let res = client_as("orders")
            .post(&url)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await
            .unwrap();
        let problem = assert_problem(res, 400, what).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(mention),
            "{what}: detail should mention `{mention}`: {detail}"
        );
    }

    let invalid: Vec<(&str, Value, &str)> = vec![
        (
            "unknown role",
            registration("billing", "b-1", "https://127.0.0.1:9"),
            "unknown role",
        ),
        (
            "instance id with a slash",
            registration("orders", "a/b", "https://127.0.0.1:9"),
            "instance_id",
        ),
        (
            "empty instance id",
            registration("orders", "", "https://127.0.0.1:9"),
            "instance_id",
        ),
        (
            "instance id too long",
            registration("orders", &"x".repeat(65), "https://127.0.0.1:9"),
            "instance_id",
        ),
        (
            "address without scheme",
            registration("orders", "o-1", "127.0.0.1:9"),
            "address",
        ),
        (
            "address not http",
            registration("orders", "o-1", "ftp://127.0.0.1:9"),
            "address",
        ),
        (
            "address with a path",
            registration("orders", "o-1", "https://127.0.0.1:9/x"),
            "address",
        ),
        (
            "address not a URL",
            registration("orders", "o-1", "not a url"),
            "address",
        ),
        (
            "empty version",
            json!({ "role": "orders", "instance_id": "o-1", "address": "https://127.0.0.1:9", "version": "" }),
            "version",
        ),
    ];
    for (what, body, mention) in &invalid {
        let problem = assert_problem(post_json_as("orders", &url, body).await, 400, what).await;
        let detail = problem["detail"].as_str().unwrap();
        assert!(
            detail.contains(mention),
            "{what}: detail should mention `{mention}`: {detail}"
        );
    }

    // Not JSON at all: unsupported media type, same problem shape.
    let res = client_as("orders")
        .post(&url)
        .header("content-type", "text/plain")
        .body(registration("orders", "o-1", "https://127.0.0.1:9").to_string())
        .send()
        .await
        .unwrap();
    assert_problem(res, 415, "text/plain body").await;

    let after = catalog(&registry).await;
    assert_eq!(after, before, "refused requests changed the catalog");

    // Control: the same endpoint accepts a valid registration (so the refusals above
    // were about the input).
    let res = post_json_as(
        "orders",
        &url,
        &registration("orders", "o-1", "https://127.0.0.1:9"),
    )
    .await;
    assert_eq!(res.status(), 200, "{:?}", res.text().await);
    let grant: Value = res.json().await.unwrap();
    assert_eq!(
        grant["lease_ttl_ms"],
        LEASE_TTL.as_millis() as u64,
        "{grant}"
    );
    assert_eq!(
        grant["renew_interval_ms"],
        RENEW_INTERVAL.as_millis() as u64,
        "{grant}"
    );
    let changed = catalog(&registry).await;
    assert_eq!(members(&changed).len(), 1, "{changed}");
}

#[tokio::test]
async fn unknown_routes_and_leases_are_404_problems() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let client = client_as("orders");
    let base = &registry.url;

    let res = client.get(format!("{base}/v1/nope")).send().await.unwrap();
    assert_problem(res, 404, "unknown route").await;
    let res = client.get(format!("{base}/")).send().await.unwrap();
    assert_problem(res, 404, "root").await;
    let res = client
        .put(format!("{base}/v1/instances/orders/ghost/lease"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "renewing an unknown lease").await;
    let res = client
        .delete(format!("{base}/v1/instances/orders/ghost"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "deregistering an unknown instance").await;
    let res = client
        .get(format!("{base}/v1/roles/billing/instances"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "unknown role listing").await;
    let res = client
        .get(format!("{base}/v1/catalog?index=x"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "non-numeric index").await;
    let res = client
        .get(format!("{base}/v1/catalog?index=0&wait=soon"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 400, "bad wait").await;

    // Every instance answers unknown routes the same way.
    let inventory = sandbox.start("inventory", "inv-1", &registry.url);
    let res = client
        .get(format!("{}/no/such/thing", inventory.url))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "unknown route on inventory").await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let before = catalog(&registry).await;
    // A valid registration padded past the default 64 KiB limit.
    let mut body = registration("orders", "o-big", "https://127.0.0.1:9");
    body["metadata"] = json!({ "pad": "x".repeat(100 * 1024) });
    let res = tokio::time::timeout(
        Duration::from_secs(10),
        post_json_as("orders", &format!("{}/v1/instances", registry.url), &body),
    )
    .await
    .expect("answer to an oversized body");
    assert_problem(res, 413, "100 KiB body").await;
    assert_eq!(catalog(&registry).await, before);

    // Also on an instance's own routes.
    let inventory = sandbox.start("inventory", "inv-1", &registry.url);
    let mut big = product("big");
    big["name"] = json!("y".repeat(100 * 1024));
    let res = post_json_as("gateway", &format!("{}/v1/products", inventory.url), &big).await;
    assert_problem(res, 413, "100 KiB product").await;
}

#[test]
fn busy_port_is_a_runtime_failure() {
    let sandbox = Sandbox::new();
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut cmd = svc_command();
    cmd.arg("run")
        .args(["--role", "inventory", "--listen", &addr])
        .arg("--data-dir")
        .arg(sandbox.data_dir())
        .args(["--instance-id", "inv-1", "--registry", &dead_url()]);
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert_error_message(&out);
    assert!(out.stderr.contains("cannot listen"), "{}", out.stderr);
    assert!(
        out.stderr.contains(&addr),
        "address not named:\n{}",
        out.stderr
    );
    assert!(out.stdout.is_empty(), "{}", out.stdout);
}
