//! Metric names and types pass Prometheus' own linter (`promtool check metrics`) on every
//! role's `/metrics`, after real traffic so that every labelled series exists.
//!
//! Needs `promtool` (Debian: `apt-get install -y prometheus`). Without it the test is
//! skipped with a message, unless `SVC_REQUIRE_PROMTOOL` is set (CI sets it).

use std::io::Write as _;
use std::process::{Command, Stdio};

use crate::harness::tools::find_tool;
use crate::harness::*;

#[tokio::test]
async fn every_roles_metrics_pass_promtool() {
    let Some(promtool) = find_tool(
        &["promtool"],
        "SVC_PROMTOOL",
        "SVC_REQUIRE_PROMTOOL",
        "apt-get install -y prometheus",
    ) else {
        return;
    };
    let shop = Topology::shop().start().await;
    shop.create_product("tea", 450, 10).await;
    shop.place_final(&order_body(&[("tea", 1)], None)).await;
    shop.place_final(&order_body(&[("tea", 1)], Some(DECLINED_CARD)))
        .await;
    // A refusal and an unknown route, so error statuses have series too.
    let _ = http()
        .get(format!("{}/products/nope", shop.api))
        .send()
        .await;

    // Every instance of every role.
    for svc in shop
        .registries
        .iter()
        .chain(shop.members.iter().map(Member::svc))
    {
        let url = format!("{}/metrics", svc.internal_url);
        let text = http()
            .get(&url)
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {url}: {e}"))
            .text()
            .await
            .unwrap();
        assert!(
            text.contains("http_server_requests_total"),
            "{}: {text}",
            svc.label
        );
        let mut child = Command::new(&promtool)
            .args(["check", "metrics"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {}: {e}", promtool.display()));
        child
            .stdin
            .take()
            .unwrap()
            .write_all(text.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "promtool on {}'s /metrics ({}):\n{said}",
            svc.label,
            out.status
        );
    }
}
