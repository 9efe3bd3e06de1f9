//! `scripts/install.sh`, staged into a temporary DESTDIR (no root, no systemd needed):
//! it puts the binary, units, docs and example config in place, and a second run
//! changes nothing it must not (an edited /etc/svc/svc.yaml survives).

use std::path::Path;
use std::process::{Command, Stdio};

use crate::harness::*;

fn install(destdir: &Path, binary: &str) -> Finished {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("scripts/install.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(script)
        .arg(binary)
        .env("DESTDIR", destdir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    run_to_exit(cmd, EXIT_TIMEOUT)
}

#[test]
fn install_stages_everything_and_is_idempotent() {
    let sandbox = Sandbox::new();
    let root = sandbox.dir.path().join("root");
    let out = install(&root, BIN);
    assert_eq!(out.code(), Some(0), "{out:?}");
    for file in [
        "usr/local/bin/svc",
        "etc/systemd/system/svc@.service",
        "etc/systemd/system/svc.target",
        "etc/svc/svc.yaml",
        "usr/local/share/doc/svc/README.md",
        "usr/local/share/bash-completion/completions/svc",
        "usr/local/share/zsh/site-functions/_svc",
        "usr/local/share/fish/vendor_completions.d/svc.fish",
        "usr/local/share/man/man1/svc.1",
        "usr/local/share/man/man1/svc-run.1",
        "etc/logrotate.d/svc",
    ] {
        assert!(root.join(file).is_file(), "{file} not installed: {out:?}");
    }
    // The registry stops last: every other role is ordered after it.
    let dropin = root.join("etc/systemd/system/svc@registry.service.d/10-stop-last.conf");
    let dropin = std::fs::read_to_string(&dropin).expect("registry drop-in");
    for role in all_roles().iter().filter(|r| *r != "registry") {
        assert!(dropin.contains(&format!("svc@{role}.service")), "{dropin}");
    }
    assert!(!dropin.contains("svc@registry.service"), "{dropin}");
    let unit = std::fs::read_to_string(root.join("etc/systemd/system/svc@.service")).unwrap();
    assert!(
        unit.contains("Type=notify") && unit.contains("WatchdogSec="),
        "{unit}"
    );
    assert!(
        out.stdout.contains("systemctl enable --now svc@registry"),
        "{}",
        out.stdout
    );
    assert!(
        out.stdout.contains("inventory"),
        "roles listed: {}",
        out.stdout
    );

    // The operator edits the config; a second install keeps it and succeeds.
    let config = root.join("etc/svc/svc.yaml");
    std::fs::write(&config, "instance_id: edited\n").unwrap();
    let again = install(&root, BIN);
    assert_eq!(again.code(), Some(0), "{again:?}");
    assert_eq!(
        std::fs::read_to_string(&config).unwrap(),
        "instance_id: edited\n"
    );
    assert!(
        again.stdout.contains("exists; left as it is"),
        "{}",
        again.stdout
    );

    // A path that is no executable: a clear error, nothing more installed.
    let fresh = sandbox.dir.path().join("fresh");
    let bad = install(&fresh, "/nonexistent/svc");
    assert_eq!(bad.code(), Some(1), "{bad:?}");
    assert!(
        bad.stderr.contains("is not an executable"),
        "{}",
        bad.stderr
    );
    assert!(!fresh.exists());
}
