//! External tools some tests drive (a headless browser, promtool): found on `PATH`, or
//! the test is skipped with a message saying how to run it, unless the environment
//! variable that requires it is set (CI sets it after installing the tool), in which case
//! a missing tool fails the test.

use std::io::Write as _;
use std::path::PathBuf;

/// The first of `names` found on `PATH` (or the path in `override_env`), else `None`
/// after printing why the test is skipped; panics instead if `require_env` is set.
pub fn find_tool(
    names: &[&str],
    override_env: &str,
    require_env: &str,
    install_hint: &str,
) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(override_env).map(PathBuf::from) {
        return Some(path);
    }
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .flat_map(|dir| names.iter().map(move |n| dir.join(n)))
            .find(|candidate| candidate.is_file())
    });
    if found.is_none() {
        let message = format!(
            "{} not found on PATH ({install_hint}, or set {override_env})",
            names.join(" / ")
        );
        if std::env::var_os(require_env).is_some_and(|v| !v.is_empty()) {
            panic!("{message}, and {require_env} is set: this test must run");
        }
        // Straight to the stderr handle: the test harness captures `eprintln!`, and a
        // skip nobody sees is a test that silently stopped running.
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: {message}; set {require_env}=1 to make this a failure"
        );
    }
    found
}
