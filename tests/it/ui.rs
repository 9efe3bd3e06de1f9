//! The registry's `/ui` page as a person opens it: through `svc ui`, the local read-only
//! proxy that presents the operator's certificate (a browser has none, and the registry
//! only talks mutual TLS), loaded in a real headless browser whose script must fetch the
//! catalog and render every running instance. Also: the proxy forwards nothing but
//! `GET /ui` and `GET /v1/catalog`, none of the browser's headers, and answers a problem
//! when no registry can be reached.
//!
//! Needs `chromium` (Debian: `apt-get install -y chromium`). Without it the browser part
//! is skipped with a message, unless `SVC_REQUIRE_CHROMIUM` is set (CI sets it).

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::tools::find_tool;
use crate::harness::*;
use serde_json::Value;

/// `svc ui --registry REGISTRIES --listen 127.0.0.1:0 EXTRA...`, waited for until ready.
fn start_ui(registries: &str, extra: &[&str]) -> Svc {
    let mut cmd = svc_command();
    cmd.arg("ui")
        .args(["--registry", registries])
        .args(["--listen", "127.0.0.1:0"])
        .args(extra);
    Svc::spawn(cmd, "ui").unwrap_or_else(|e| panic!("{e}"))
}

/// What a browser is: no client certificate, no API key, no pooled connections.
fn browser() -> reqwest::Client {
    plain_client_builder()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(10))
        .build()
        .expect("http client")
}

async fn problem(res: reqwest::Response, status: u16) -> Value {
    assert_eq!(res.status(), status, "{res:?}");
    assert_eq!(
        header(&res, "content-type").as_deref(),
        Some("application/problem+json")
    );
    let body: Value = res.json().await.expect("problem JSON");
    assert_eq!(body["status"], status, "{body}");
    body
}

#[tokio::test]
async fn the_page_opened_through_svc_ui_renders_every_running_instance() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let inventory = sandbox.start("inventory", "inv-ui", &registry.url);
    let payments = sandbox.start("payments", "pay-ui", &registry.url);
    wait_registered(&registry, &[&inventory, &payments]).await;

    // Straight to the registry, a browser (no certificate) gets nowhere.
    assert!(browser()
        .get(format!("{}/ui", registry.url))
        .send()
        .await
        .is_err());

    let ui = start_ui(&registry.url, &[]);
    assert_eq!(ui.ready["role"], "ui");
    assert!(ui.url.starts_with("http://127.0.0.1:"), "{}", ui.url);
    // It says what to open (on stderr, which may arrive just after the ready line).
    ui.wait_for_log(&format!("{}/ui", ui.url), Duration::from_secs(5));

    // The page itself: HTML, not cached, locked down; the ids are not in it (the script
    // must fetch and render them).
    let url = format!("{}/ui", ui.url);
    let res = browser().get(&url).send().await.expect("GET /ui");
    assert_eq!(res.status(), 200);
    let h = |name: &str| header(&res, name).unwrap_or_default();
    assert!(h("content-type").starts_with("text/html"));
    assert!(h("content-security-policy").contains("connect-src 'self'"));
    let html = res.text().await.unwrap();
    assert!(html.contains("/v1/catalog") && !html.contains("inv-ui"));

    // The catalog, with the registry's index and clock; blocking queries keep their query.
    let res = browser()
        .get(format!("{}/v1/catalog", ui.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    let index = header(&res, "x-svc-index").expect("x-svc-index relayed");
    assert!(header(&res, "x-svc-time-ms").is_some(), "{res:?}");
    let catalog: Value = res.json().await.unwrap();
    assert!(
        lists(&catalog, &inventory) && lists(&catalog, &payments),
        "{catalog}"
    );
    let asked = Instant::now();
    let res = browser()
        .get(format!("{}/v1/catalog?index={index}&wait=1s", ui.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert!(
        asked.elapsed() >= Duration::from_millis(900),
        "did not block"
    );

    let Some(chromium) = find_tool(
        &["chromium", "chromium-browser", "google-chrome"],
        "SVC_CHROMIUM",
        "SVC_REQUIRE_CHROMIUM",
        "apt-get install -y chromium",
    ) else {
        return;
    };
    let profile = sandbox.dir.path().join("chromium-profile");
    let mut cmd = Command::new(&chromium);
    cmd.args([
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        // Lets the page's timers and fetches run for 3 s of page time, then dumps.
        "--virtual-time-budget=3000",
    ])
    .arg(format!("--user-data-dir={}", profile.display()))
    .args(["--dump-dom", &url])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped());
    let out = run_to_exit(cmd, Duration::from_secs(90));
    assert!(out.status.success(), "chromium failed: {out:?}");
    for svc in [&inventory, &payments] {
        let id = svc.instance_id();
        // A rendered row, not a mention in the script.
        assert!(
            out.stdout.contains(&format!("<tr data-instance=\"{id}\">")),
            "no row for {id} in the rendered page:\n{}",
            out.stdout
        );
        assert!(out.stdout.contains(&svc.internal_url), "{}", out.stdout);
    }
    assert!(
        out.stdout.contains("2 instance(s)"),
        "summary line missing:\n{}",
        out.stdout
    );
}

#[tokio::test]
async fn svc_ui_is_read_only_and_answers_502_when_no_registry_can_be_reached() {
    let sandbox = Sandbox::new();
    let mut registry = sandbox.start_registry();
    // A dead registry first: the next one answers instead.
    let mut ui = start_ui(&format!("{},{}", dead_url(), registry.url), &[]);
    let res = browser()
        .get(format!("{}/v1/catalog", ui.url))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200, "{res:?}");

    // No write, and nothing but the two routes, reaches the registry.
    let registration = serde_json::json!({
        "role": "inventory", "instance_id": "sneaky", "address": "https://127.0.0.1:1",
        "version": "0", "metadata": {"shard": "0"}
    });
    let http = browser();
    for (method, path) in [
        ("POST", "/v1/instances"),
        ("PUT", "/v1/instances/inventory/sneaky/lease"),
        ("DELETE", "/v1/instances/inventory/sneaky"),
        ("POST", "/v1/catalog"),
        ("GET", "/v1/roles/inventory/instances"),
        ("GET", "/health/ready"),
        ("GET", "/v1/instances"),
    ] {
        let req = http.request(method.parse().unwrap(), format!("{}{path}", ui.url));
        let res = req.json(&registration).send().await.unwrap();
        let body = problem(res, 404).await;
        assert!(
            body["detail"].as_str().unwrap().contains("read-only"),
            "{body}"
        );
    }
    assert!(!catalog(&registry).await.to_string().contains("sneaky"));

    let registry_url = registry.url.clone();
    registry.kill();
    for path in ["/v1/catalog", "/ui"] {
        let res = http.get(format!("{}{path}", ui.url)).send().await.unwrap();
        let body = problem(res, 502).await;
        assert!(
            body["detail"].as_str().unwrap().contains(&registry_url),
            "{body}"
        );
    }
    assert_eq!(ui.terminate().code(), Some(0), "{}", ui.stderr());
}

#[tokio::test]
async fn svc_ui_forwards_none_of_the_browsers_headers_and_relays_only_what_the_page_needs() {
    // A stand-in registry (plain HTTP, `--insecure`) that records the request it gets.
    let fake = TcpListener::bind("127.0.0.1:0").unwrap();
    let fake_url = format!("http://{}", fake.local_addr().unwrap());
    let seen = std::thread::spawn(move || {
        let (mut conn, _) = fake.accept().unwrap();
        let mut head = Vec::new();
        let mut byte = [0u8; 1];
        while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
            head.push(byte[0]);
        }
        let answer = "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-svc-index: 7\r\n\
                      x-svc-time-ms: 123\r\nset-cookie: session=1\r\nx-internal: yes\r\n\
                      content-length: 2\r\nconnection: close\r\n\r\n{}";
        conn.write_all(answer.as_bytes()).unwrap();
        String::from_utf8(head).unwrap().to_ascii_lowercase()
    });
    let ui = start_ui(&fake_url, &["--insecure"]);
    let res = browser()
        .get(format!("{}/v1/catalog?index=3&wait=1s", ui.url))
        .header("cookie", "session=browser")
        .header("authorization", "Bearer browser")
        .header("x-custom", "browser")
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    assert_eq!(header(&res, "x-svc-index").as_deref(), Some("7"));
    assert_eq!(header(&res, "x-svc-time-ms").as_deref(), Some("123"));
    assert_eq!(header(&res, "set-cookie"), None);
    assert_eq!(header(&res, "x-internal"), None);
    assert_eq!(res.text().await.unwrap(), "{}");
    let head = seen.join().unwrap();
    assert!(
        head.starts_with("get /v1/catalog?index=3&wait=1s http/1.1\r\n"),
        "{head}"
    );
    for name in ["cookie", "authorization", "x-custom", "browser"] {
        assert!(!head.contains(name), "`{name}` forwarded:\n{head}");
    }
}

#[test]
fn svc_ui_without_a_certificate_or_with_bad_flags_exits_2() {
    let mut cmd = svc_command();
    cmd.args(["ui", "--identity", "nobody", "--listen", "127.0.0.1:0"]);
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(2), "{out:?}");
    assert!(out.stderr.contains("nobody.crt"), "{}", out.stderr);
    assert!(
        out.stderr.contains("--tls-dir") && out.stderr.contains("--identity"),
        "{}",
        out.stderr
    );
    for bad in [
        &["--listen", "localhost"][..],
        &["--registry", "ftp://x"],
        &["--nope"],
    ] {
        let mut cmd = svc_command();
        cmd.arg("ui").args(bad);
        let out = run_to_exit(cmd, EXIT_TIMEOUT);
        assert_eq!(out.code(), Some(2), "{bad:?}: {out:?}");
    }
}
