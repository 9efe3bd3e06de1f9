//! The sidecar (`svc run --role loyalty --app URL`): a registry, a tiny application
//! ([`FakeApp`]) and svc beside it, as the sidecar of `loyalty` from a roles directory.
//!
//! * Inbound: a caller the manifest lists gets the application's answer, and the
//!   application sees the verified role in `x-svc-caller-role` (never the caller's own)
//!   and the request's `traceparent`; a caller not listed gets 403 and the application
//!   sees nothing; without a client certificate the handshake fails; an application
//!   slower than the caller's deadline gives 504, a stopped one 503.
//! * Health: the instance is ready and registered while the application's health
//!   endpoint answers 2xx, neither while it does not, and both again once it recovers.
//! * `--app` only for a role from a file, and only a loopback URL (exit 2).

use std::path::PathBuf;
use std::time::Duration;

use crate::harness::*;
use svc_platform::tls::pki::{self, IssueRequest};

const LOYALTY: &str = "\
name: loyalty
description: Gives customers points for confirmed orders.
port: 0
stateful: false
registers: true
calls: []
publishes: []
consumes: []
endpoints:
  POST /v1/points/{customer}: [gateway]
  GET /v1/points/{customer}: [gateway, operator]
";

/// A registry knowing loyalty, the application, and its sidecar, ready.
struct SidecarWorld {
    app: FakeApp,
    sidecar: Svc,
    registry: Svc,
    _sandbox: Sandbox,
}

impl SidecarWorld {
    fn start() -> SidecarWorld {
        let sandbox = Sandbox::new();
        let roles_dir = sandbox.dir.path().join("roles.d");
        std::fs::create_dir_all(&roles_dir).unwrap();
        std::fs::write(roles_dir.join("loyalty.yaml"), LOYALTY).unwrap();
        let pki_dir: PathBuf = own_pki(&sandbox);
        pki::issue(&pki_dir, &IssueRequest::new("loyalty", &["127.0.0.1"])).unwrap();
        let config = sandbox.write_file("svc.yaml", "app:\n  health_interval: 100ms\n");

        let mut registry_cmd = sandbox.registry_command(0);
        registry_cmd.arg("--roles-dir").arg(&roles_dir);
        let registry = sandbox.start_cmd(registry_cmd, "registry", "reg-0");
        let app = FakeApp::start();
        let mut cmd = sandbox.run_command("loyalty", "loy-0", &registry.url);
        cmd.arg("--roles-dir")
            .arg(&roles_dir)
            .arg("--tls-dir")
            .arg(&pki_dir)
            .arg("--config")
            .arg(&config)
            .args(["--app", &app.url]);
        let sidecar = sandbox.start_cmd(cmd, "loyalty", "loy-0");
        SidecarWorld {
            app,
            sidecar,
            registry,
            _sandbox: sandbox,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.sidecar.url)
    }

    /// Waits until `/health/ready` answers `status` and the registry lists the sidecar
    /// (`listed`) or not.
    async fn wait_health(&self, status: u16, listed: bool) {
        let ready = self.url("/health/ready");
        wait_for("the sidecar's readiness", Duration::from_secs(10), || {
            let ready = ready.clone();
            async move {
                let res = client_as("operator").get(&ready).send().await;
                let got = res.map_err(|e| e.to_string())?.status().as_u16();
                let catalog = catalog(&self.registry).await;
                let is_listed = lists(&catalog, &self.sidecar);
                if got == status && is_listed == listed {
                    Ok(())
                } else {
                    Err(format!("ready {got}, listed {is_listed}: {catalog}"))
                }
            }
        })
        .await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_listed_caller_reaches_the_app_as_its_verified_role() {
    let world = SidecarWorld::start();
    world.wait_health(200, true).await;

    // A listed caller; its own x-svc-caller-role is replaced by the verified role.
    let res = client_as("gateway")
        .post(world.url("/v1/points/c-1?reason=order"))
        .header("content-type", "application/json")
        .header("x-svc-caller-role", "orders")
        .header(
            "traceparent",
            "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",
        )
        .body(r#"{"points":5}"#)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 201);
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("application/vnd.loyalty+json")
    );
    let answer: serde_json::Value = res.json().await.unwrap();
    assert_eq!(answer["target"], "/v1/points/c-1?reason=order", "{answer}");
    assert_eq!(answer["body"], r#"{"points":5}"#, "{answer}");

    let seen = world.app.received();
    assert_eq!(seen.len(), 1, "{seen:?}");
    let seen = &seen[0];
    assert_eq!(seen.method, "POST");
    assert_eq!(seen.headers["x-svc-caller-role"], "gateway", "{seen:?}");
    assert_eq!(seen.headers["content-type"], "application/json");
    // The request's own span, in the caller's trace.
    let traceparent = &seen.headers["traceparent"];
    assert!(
        traceparent.starts_with("00-0af7651916cd43dd8448eb211c80319c-")
            && !traceparent.contains("b7ad6b7169203331"),
        "{traceparent}"
    );

    // Counted like any request, by the route pattern.
    let metrics = client_as("operator")
        .get(world.url("/metrics"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let served = metric_sample(
        &metrics,
        "http_server_requests_total",
        &[("route", "/v1/points/{customer}"), ("status", "201")],
    );
    assert_eq!(served, Some(1.0), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn others_are_refused_before_the_app_sees_anything() {
    let world = SidecarWorld::start();
    world.wait_health(200, true).await;

    // Listed for GET only.
    let res = client_as("operator")
        .post(world.url("/v1/points/c-1"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "operator posts points").await;
    let res = client_as("inventory")
        .get(world.url("/v1/points/c-1"))
        .header("x-svc-caller-role", "gateway")
        .send()
        .await
        .unwrap();
    assert_problem(res, 403, "inventory reads points").await;
    let res = client_as("gateway")
        .get(world.url("/v1/undeclared"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 404, "an undeclared path").await;

    // No client certificate: the handshake fails.
    let ca = std::fs::read(test_pki().join("ca.crt")).unwrap();
    let anonymous = reqwest::Client::builder()
        .add_root_certificate(reqwest::Certificate::from_pem(&ca).unwrap())
        .build()
        .unwrap();
    let refused = anonymous.get(world.url("/v1/points/c-1")).send().await;
    assert!(refused.is_err(), "{refused:?}");
    assert!(
        world.app.received().is_empty(),
        "{:?}",
        world.app.received()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_app_is_a_504_and_a_stopped_one_a_503() {
    let mut world = SidecarWorld::start();
    world.wait_health(200, true).await;
    let res = client_as("gateway")
        .get(world.url("/v1/points/slow"))
        .header("x-svc-deadline-ms", "300")
        .send()
        .await
        .unwrap();
    assert_problem(res, 504, "past the caller's deadline").await;

    world.app.stop();
    let res = client_as("gateway")
        .get(world.url("/v1/points/c-1"))
        .send()
        .await
        .unwrap();
    assert_problem(res, 503, "the app is down").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_and_registered_only_while_the_app_is_healthy() {
    let world = SidecarWorld::start();
    world.wait_health(200, true).await;
    world.app.set_healthy(false);
    world.wait_health(503, false).await;
    world.app.set_healthy(true);
    world.wait_health(200, true).await;
}

#[test]
fn app_is_only_for_roles_from_files_and_only_on_loopback() {
    let sandbox = Sandbox::new();
    let roles_dir = sandbox.dir.path().join("roles.d");
    std::fs::create_dir_all(&roles_dir).unwrap();
    std::fs::write(roles_dir.join("loyalty.yaml"), LOYALTY).unwrap();
    let run = |role: &str, app: &str| {
        let mut cmd = svc_command();
        cmd.args(["run", "--role", role, "--app", app])
            .arg("--roles-dir")
            .arg(&roles_dir);
        run_to_exit(cmd, EXIT_TIMEOUT)
    };
    let out = run("orders", "http://127.0.0.1:9000");
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("only for roles from files"), "{out:?}");
    let out = run("loyalty", "http://10.0.0.5:9000");
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("app.url"), "{out:?}");
}
