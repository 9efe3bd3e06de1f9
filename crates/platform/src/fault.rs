//! Test hooks: environment variables that make an instance misbehave on purpose, so
//! integration tests can break a dependency while it stays registered and observable.
//!
//! They exist only in builds with the `fault-hooks` feature, which `cargo test` turns on
//! (the `svc` crate's dev-dependency on this one); without it the functions below are
//! constants and a release binary ignores the variables entirely. Each hook is read
//! once and announces itself with a warning.

use std::time::Duration;

/// With `SVC_FAULT_HTTP_500=1`, an instance answers 500 to every request except its
/// platform endpoints (health, metrics, peers).
pub(crate) const HTTP_500_ENV: &str = "SVC_FAULT_HTTP_500";

/// Whether [`HTTP_500_ENV`] is on for this process.
#[cfg(feature = "fault-hooks")]
pub(crate) fn http_500() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| {
        let on = std::env::var(HTTP_500_ENV).is_ok_and(|v| v == "1");
        if on {
            tracing::warn!(
                "fault injection: every request but health, metrics and peers answers 500"
            );
        }
        on
    })
}

/// A delay a test asks for in the variable `name` (a humantime duration, e.g. `300ms`).
#[cfg(feature = "fault-hooks")]
pub fn delay(name: &str) -> Option<Duration> {
    let delay = std::env::var(name)
        .ok()
        .and_then(|v| humantime::parse_duration(&v).ok());
    if let Some(d) = delay {
        tracing::warn!(variable = name, delay = ?d, "fault injection: delay on");
    }
    delay
}

#[cfg(not(feature = "fault-hooks"))]
pub(crate) fn http_500() -> bool {
    false
}

#[cfg(not(feature = "fault-hooks"))]
pub fn delay(_name: &str) -> Option<Duration> {
    None
}
