//! One trace across services, end to end: instances started with `--log-file` write
//! JSON lines, a traced request goes through the gateway to inventory, and `svc trace`
//! finds its lines in every file and prints them nested and in time order.

use std::path::Path;

use crate::harness::*;
use serde_json::Value;

const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn trace_command(args: &[&str], logs: &Path) -> Finished {
    let mut cmd = svc_command();
    cmd.arg("trace").args(args).arg("--logs").arg(logs);
    run_to_exit(cmd, EXIT_TIMEOUT)
}

/// The JSON lines of one log file that belong to `TRACE_ID`.
fn traced(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .filter(|v| v["trace_id"] == TRACE_ID)
        .collect()
}

/// The `+12.3ms` offset a line of `svc trace` starts with.
fn offset_ms(line: &str) -> f64 {
    line.trim_start()
        .strip_prefix('+')
        .and_then(|l| l.split("ms").next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no offset in `{line}`"))
}

fn indent(line: &str) -> usize {
    let after = line.split_once("ms  ").map_or("", |(_, rest)| rest);
    after.len() - after.trim_start().len()
}

#[tokio::test]
async fn svc_trace_prints_the_calls_of_a_request_across_services() {
    let sandbox = Sandbox::new();
    let logs = sandbox.dir.path().join("logs");
    let registry = sandbox.start_registry();
    let start = |role: &str, id: &str| {
        let mut cmd = sandbox.run_command(role, id, &registry.url);
        cmd.arg("--log-file").arg(logs.join(format!("{id}.jsonl")));
        sandbox.start_cmd(cmd, role, id)
    };
    let inventory = start("inventory", "inv-t");
    let gateway = start("gateway", "gw-t");
    wait_peers(&gateway, &[&inventory]).await;

    let api = format!("{}/api/v1", gateway.url);
    let created = http()
        .post(format!("{api}/products"))
        .json(&product("tea"))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let res = http()
        .get(format!("{api}/products/tea"))
        .header("traceparent", format!("00-{TRACE_ID}-00f067aa0ba902b7-01"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);

    // The files: JSON, one line per request served under the trace, linked by span ids.
    let gw = traced(&logs.join("gw-t.jsonl"));
    let inv = traced(&logs.join("inv-t.jsonl"));
    let request_line = |lines: &[Value], path: &str| {
        lines
            .iter()
            .find(|l| l["msg"] == "request" && l["path"] == path)
            .cloned()
            .unwrap_or_else(|| panic!("no `request` line for {path} in {lines:?}"))
    };
    let gw_line = request_line(&gw, "/api/v1/products/tea");
    let inv_line = request_line(&inv, "/v1/products/tea");
    assert_eq!(gw_line["parent_span_id"], "00f067aa0ba902b7", "{gw_line}");
    assert_eq!(inv_line["parent_span_id"], gw_line["span_id"], "{inv_line}");
    assert_eq!(
        (gw_line["role"].as_str(), inv_line["role"].as_str()),
        (Some("gateway"), Some("inventory"))
    );
    // Nothing of the platform's chatter (lease renewals, watches) in the files.
    let registry_chatter = std::fs::read_to_string(logs.join("inv-t.jsonl"))
        .unwrap()
        .lines()
        .filter(|l| l.contains("/lease") || l.contains("/v1/catalog"))
        .count();
    assert_eq!(registry_chatter, 0);

    // The tree: inventory's span nested under the gateway's, each line in time order.
    let out = trace_command(&[TRACE_ID], &logs);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let lines: Vec<&str> = out.stdout.lines().filter(|l| l.contains("ms  ")).collect();
    let position = |needle: &str| {
        lines
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no `{needle}` in:\n{}", out.stdout))
    };
    let gw_span = position("gateway/gw-t span");
    let inv_span = position("inventory/inv-t span");
    let inv_request = position("path=/v1/products/tea");
    let gw_request = position("path=/api/v1/products/tea");
    assert!(
        gw_span < inv_span && inv_span < inv_request && inv_request < gw_request,
        "not nested in time order:\n{}",
        out.stdout
    );
    assert!(
        indent(lines[inv_span]) > indent(lines[gw_span]),
        "{}",
        out.stdout
    );
    assert!(
        offset_ms(lines[inv_request]) <= offset_ms(lines[gw_request]),
        "{}",
        out.stdout
    );
    assert!(out.stdout.contains("2 instances"), "{}", out.stdout);

    // Flat: every line of the trace, timestamps never going back.
    let flat = trace_command(&[TRACE_ID, "--flat"], &logs);
    assert_eq!(flat.code(), Some(0), "{flat:?}");
    let offsets: Vec<f64> = flat
        .stdout
        .lines()
        .filter(|l| l.trim_start().starts_with('+'))
        .map(offset_ms)
        .collect();
    assert!(offsets.len() >= 2, "{}", flat.stdout);
    assert!(offsets.windows(2).all(|w| w[0] <= w[1]), "{}", flat.stdout);

    // A trace nobody logged, and a directory with no logs: exit 1, saying so.
    let none = trace_command(&["ffffffffffffffffffffffffffffffff"], &logs);
    assert_eq!(none.code(), Some(1), "{none:?}");
    assert!(none.stderr.contains("no log line"), "{}", none.stderr);
    let empty = trace_command(&[TRACE_ID], sandbox.dir.path().join("nowhere").as_path());
    assert_eq!(empty.code(), Some(1), "{empty:?}");
    assert!(empty.stderr.starts_with("svc: error:"), "{}", empty.stderr);
    let bad = trace_command(&["not an id"], &logs);
    assert_eq!(bad.code(), Some(2), "{bad:?}");
}
