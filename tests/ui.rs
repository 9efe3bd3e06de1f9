//! The registry's `/ui` page, loaded in a real headless browser: its script must fetch
//! the catalog and render every running instance.
//!
//! Needs `chromium` (Debian: `apt-get install -y chromium`). Without it the browser part
//! is skipped with a message, unless `SVC_REQUIRE_CHROMIUM` is set (CI sets it).

mod common;

use std::process::{Command, Stdio};
use std::time::Duration;

use common::tools::find_tool;
use common::*;

#[tokio::test]
async fn the_registry_page_renders_every_running_instance() {
    let cluster = Cluster::new();
    let registry = cluster.start_registry();
    let inventory = cluster.start("inventory", "inv-ui", &registry.url);
    let payments = cluster.start("payments", "pay-ui", &registry.url);
    wait_registered(&registry, &[&inventory, &payments]).await;

    // The page itself: HTML, not cached, locked down; the ids are not in it (the script
    // must fetch and render them).
    let url = format!("{}/ui", registry.url);
    let res = http().get(&url).send().await.expect("GET /ui");
    assert_eq!(res.status(), 200);
    let header = |name: &str| {
        res.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_string()
    };
    assert!(header("content-type").starts_with("text/html"));
    assert!(header("content-security-policy").contains("connect-src 'self'"));
    let html = res.text().await.unwrap();
    assert!(html.contains("/v1/catalog") && !html.contains("inv-ui"));

    let Some(chromium) = find_tool(
        &["chromium", "chromium-browser", "google-chrome"],
        "SVC_CHROMIUM",
        "SVC_REQUIRE_CHROMIUM",
        "apt-get install -y chromium",
    ) else {
        return;
    };
    let profile = cluster.dir.path().join("chromium-profile");
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
        assert!(out.stdout.contains(&svc.url), "{}", out.stdout);
    }
    assert!(
        out.stdout.contains("2 instance(s)"),
        "summary line missing:\n{}",
        out.stdout
    );
}
