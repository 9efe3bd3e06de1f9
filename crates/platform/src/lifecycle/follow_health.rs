//! Registration follows the role's [`HealthGate`]: while the gate is closed the instance
//! is deregistered everywhere (peers stop picking it, as when it drains), and once it
//! opens again it registers again. `/health/ready` follows the gate by itself
//! ([`crate::server::Readiness`]).

use std::sync::Arc;

use tokio::task::JoinHandle;

use crate::health_gate::HealthGate;
use crate::lease_keeper::LeaseKeeper;

/// Spawns the task that (de)registers on each change of `gate`; `registered`: whether
/// the start registered (it does only while healthy). The drain aborts the task before
/// deregistering for good.
pub(super) fn spawn(
    gate: &HealthGate,
    mut registered: bool,
    keeper: Arc<LeaseKeeper>,
) -> JoinHandle<()> {
    let mut changes = gate.watch();
    tokio::spawn(async move {
        loop {
            let healthy = *changes.borrow_and_update();
            if healthy == registered {
                if changes.changed().await.is_err() {
                    return;
                }
                continue;
            }
            registered = healthy;
            if healthy {
                tracing::info!("healthy again: registering");
                keeper.start().await;
            } else {
                tracing::warn!("unhealthy: deregistering until healthy again");
                keeper.deregister_all().await;
            }
        }
    })
}
