//! What a shell user gets from the binary itself: completion scripts (`svc completions`)
//! and manual pages (`svc man`), both generated from the clap definitions, so they name
//! every subcommand the binary has.

use std::process::{Command, Stdio};

use crate::harness::*;

/// The subcommands `svc --help` lists (between "Commands:" and the next blank line).
fn subcommands() -> Vec<String> {
    let mut cmd = svc_command();
    cmd.arg("--help");
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{out:?}");
    let names: Vec<String> = out
        .stdout
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| !l.trim().is_empty())
        // A name at two spaces; deeper lines continue a description.
        .filter(|l| l.starts_with("  ") && !l.starts_with("   "))
        .filter_map(|l| l.split_whitespace().next())
        .filter(|name| *name != "help")
        .map(str::to_string)
        .collect();
    assert!(names.len() >= 10, "{}", out.stdout);
    names
}

fn svc_stdout(args: &[&str]) -> String {
    let mut cmd = svc_command();
    cmd.args(args);
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(0), "svc {args:?}: {out:?}");
    out.stdout
}

/// What bash completes for the words typed so far, through the generated script.
fn bash_completes(script: &std::path::Path, words: &[&str]) -> Vec<String> {
    let line = format!(
        "source {}; COMP_WORDS=({}); COMP_CWORD={}; _svc svc {} {}; printf '%s\\n' \"${{COMPREPLY[@]}}\"",
        script.display(),
        words.join(" "),
        words.len() - 1,
        words[words.len() - 1],
        words[words.len() - 2],
    );
    let out = Command::new("bash")
        .args(["-c", &line])
        .stdin(Stdio::null())
        .output()
        .expect("run bash");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn completion_scripts_know_every_subcommand_and_bash_completes_with_them() {
    let names = subcommands();
    for shell in ["bash", "zsh", "fish"] {
        let script = svc_stdout(&["completions", shell]);
        for name in &names {
            assert!(script.contains(name.as_str()), "{shell}: no {name}");
        }
    }
    let sandbox = Sandbox::new();
    let script = sandbox.dir.path().join("svc.bash");
    std::fs::write(&script, svc_stdout(&["completions", "bash"])).unwrap();
    assert_eq!(bash_completes(&script, &["svc", "ce"]), ["certs"]);
    assert_eq!(
        bash_completes(&script, &["svc", "run", "--ro"]),
        ["--role", "--roles-dir"]
    );
    assert!(bash_completes(&script, &["svc", "completions", "z"]).contains(&"zsh".into()));

    // An unknown shell is a usage error, not a script.
    let mut cmd = svc_command();
    cmd.args(["completions", "tcsh"]);
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(2), "{out:?}");
}

#[test]
fn the_manual_page_is_roff_with_one_page_per_subcommand() {
    let page = svc_stdout(&["man"]);
    assert!(page.contains(".TH svc 1"), "{page}");
    for name in subcommands() {
        assert!(
            page.contains(&format!("svc\\-{name}(1)")),
            "no {name} in:\n{page}"
        );
    }
    let sandbox = Sandbox::new();
    let dir = sandbox.dir.path().join("man1");
    let mut cmd = svc_command();
    cmd.arg("man").arg("--dir").arg(&dir);
    let out = run_to_exit(cmd, EXIT_TIMEOUT);
    assert_eq!(out.code(), Some(0), "{out:?}");
    for file in [
        "svc.1",
        "svc-run.1",
        "svc-certs-issue.1",
        "svc-completions.1",
    ] {
        let text =
            std::fs::read_to_string(dir.join(file)).unwrap_or_else(|e| panic!("{file}: {e}"));
        assert!(text.starts_with(".ie"), "{file}: {text}");
    }
    // The flags of `svc run`, with their help.
    let run = std::fs::read_to_string(dir.join("svc-run.1")).unwrap();
    assert!(
        run.contains("\\-\\-role") && run.contains("Role to run"),
        "{run}"
    );
}
