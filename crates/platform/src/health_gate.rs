//! Whether what a role depends on outside its process lets it serve.
//!
//! A built-in role is healthy whenever its process is; a sidecar is not: it can serve
//! only while the application beside it answers. The role says so through the
//! [`HealthGate`] of its [`super::role::RoleContext`] and the lifecycle follows it with
//! the mechanisms it already has for starting and draining: `/health/ready` answers 503
//! while the gate is closed ([`super::server::Readiness`]), and the instance is
//! deregistered from every registry (as on SIGTERM, so peers stop picking it), then
//! registered again once the gate opens. A gate nobody touches stays open.

use tokio::sync::watch;

/// Open (healthy) or closed; cheap to clone, every clone is the same gate.
#[derive(Clone, Debug)]
pub struct HealthGate(watch::Sender<bool>);

impl Default for HealthGate {
    fn default() -> Self {
        HealthGate(watch::channel(true).0)
    }
}

impl HealthGate {
    /// Opens (`true`) or closes the gate; returns whether that changed it.
    pub fn set_healthy(&self, healthy: bool) -> bool {
        self.0.send_if_modified(|current| {
            let changed = *current != healthy;
            *current = healthy;
            changed
        })
    }

    pub fn is_healthy(&self) -> bool {
        *self.0.borrow()
    }

    /// Waits for the next change; returns the new state.
    pub(crate) fn watch(&self) -> watch::Receiver<bool> {
        self.0.subscribe()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gate_is_open_until_closed_and_reports_changes_only() {
        let gate = HealthGate::default();
        assert!(gate.is_healthy());
        assert!(!gate.set_healthy(true));
        assert!(gate.clone().set_healthy(false));
        assert!(!gate.is_healthy());
        assert!(!gate.set_healthy(false));
    }
}
