//! The logrotate file svc installs (`config/logrotate-svc`) rotates a running instance's
//! `--log-file` with `copytruncate`: the copy holds what was written, and the instance
//! goes on writing whole lines at the start of the emptied file (it appends with
//! O_APPEND), with no hole of NUL bytes where the old end was and no restart or signal.
//!
//! Needs `logrotate` (Debian: `apt-get install -y logrotate`); skipped without it unless
//! `SVC_REQUIRE_LOGROTATE` is set.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::harness::tools::find_tool;
use crate::harness::*;

#[tokio::test]
async fn copytruncate_keeps_a_running_instance_writing_whole_lines() {
    let Some(logrotate) = find_tool(
        &["logrotate", "/usr/sbin/logrotate"],
        "SVC_LOGROTATE",
        "SVC_REQUIRE_LOGROTATE",
        "apt-get install -y logrotate",
    ) else {
        return;
    };
    let sandbox = Sandbox::new();
    let logs = sandbox.dir.path().join("logs");
    std::fs::create_dir_all(&logs).unwrap();
    let log_file = logs.join("registry.jsonl");
    let mut cmd = sandbox.registry_command(0);
    cmd.arg("--log-file").arg(&log_file);
    let registry = Svc::spawn(cmd, "registry/reg-0").unwrap_or_else(|e| panic!("{e}"));
    let before = std::fs::read_to_string(&log_file).unwrap();
    assert!(before.lines().count() >= 1, "{before}");

    // The installed file, for this directory and without `su svc` (no such user here).
    let installed =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("config/logrotate-svc"))
            .unwrap();
    assert!(installed.contains("copytruncate"), "{installed}");
    let config = installed
        .replace("/var/log/svc/", &format!("{}/", logs.display()))
        .lines()
        .filter(|l| !l.trim_start().starts_with("su "))
        .collect::<Vec<_>>()
        .join("\n");
    let config = sandbox.write_file("logrotate.conf", &format!("{config}\n"));
    let out = Command::new(&logrotate)
        .arg("--force")
        .arg("--state")
        .arg(sandbox.dir.path().join("logrotate.state"))
        .arg(&config)
        .output()
        .expect("run logrotate");
    assert!(out.status.success(), "logrotate: {out:?}");
    let rotated = std::fs::read_to_string(logs.join("registry.jsonl.1")).unwrap();
    assert!(rotated.starts_with(&before), "the copy lost lines");

    // New lines (a request makes one at debug level in the file) go to the emptied file.
    let (text, _) = wait_for("a line after the rotation", Duration::from_secs(10), || {
        let log_file = log_file.clone();
        let url = registry.url.clone();
        async move {
            let _ = http()
                .get(format!("{url}/v1/roles/nope/instances"))
                .send()
                .await;
            let text = std::fs::read_to_string(&log_file).map_err(|e| e.to_string())?;
            if text.is_empty() {
                Err("the file is still empty".to_string())
            } else {
                Ok(text)
            }
        }
    })
    .await;
    assert!(
        !text.contains('\0'),
        "a hole where the old end was: {text:?}"
    );
    for line in text.lines() {
        serde_json::from_str::<serde_json::Value>(line)
            .unwrap_or_else(|e| panic!("not a whole JSON line ({e}): {line}"));
    }
}
