//! The other subcommands: `svc status`, `svc roles`, `svc --help`.

use crate::harness::*;

fn status(registries: &str) -> Finished {
    let mut cmd = svc_command();
    cmd.args(["status", "--registry", registries]);
    run_to_exit(cmd, EXIT_TIMEOUT)
}

#[tokio::test]
async fn status_lists_the_registered_instances() {
    let sandbox = Sandbox::new();
    let registry = sandbox.start_registry();
    let inventory = sandbox.start("inventory", "inv-1", &registry.url);
    let orders = sandbox.start("orders", "ord-1", &registry.url);
    wait_registered(&registry, &[&inventory, &orders]).await;

    let out = status(&registry.url);
    assert_eq!(out.code(), Some(0), "{out:?}");
    for (role, svc) in [("inventory", &inventory), ("orders", &orders)] {
        let id = svc.instance_id();
        assert!(
            out.stdout.lines().any(|l| {
                let cols: Vec<&str> = l.split_whitespace().collect();
                cols.len() >= 3 && cols[0] == role && cols[1] == id && cols[2] == svc.url
            }),
            "no `{role} {id} {}` row in:\n{}",
            svc.url,
            out.stdout
        );
    }
    assert!(out.stdout.contains(&registry.url), "{}", out.stdout);

    // The first registry that answers is used.
    let out = status(&format!("{},{}", dead_url(), registry.url));
    assert_eq!(out.code(), Some(0), "{out:?}");
    assert!(out.stdout.contains("inv-1"), "{}", out.stdout);
}

#[test]
fn status_with_an_unreachable_registry_fails_clearly() {
    let dead = dead_url();
    let out = status(&dead);
    assert_eq!(out.code(), Some(1), "{out:?}");
    assert!(out.stderr.starts_with("svc: error:"), "{}", out.stderr);
    assert!(out.stderr.contains(&dead), "URL not named:\n{}", out.stderr);
    assert!(
        out.stderr.contains("no registry answered"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
}

#[test]
fn roles_lists_every_role() {
    let mut cmd = svc_command();
    cmd.arg("roles");
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let first_columns: Vec<&str> = out
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for role in all_roles() {
        assert!(
            first_columns.contains(&role.as_str()),
            "`{role}` missing:\n{}",
            out.stdout
        );
    }
}

#[test]
fn help_mentions_every_command() {
    let mut cmd = svc_command();
    cmd.arg("--help");
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let commands: Vec<&str> = out
        .stdout
        .lines()
        .map(str::trim_start)
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for command in ["run", "dev", "status", "roles", "config"] {
        assert!(
            commands.contains(&command),
            "`{command}` missing:\n{}",
            out.stdout
        );
    }

    // Wrong usage is exit 2.
    let mut cmd = svc_command();
    cmd.arg("frobnicate");
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(2), "{out:?}");
}
