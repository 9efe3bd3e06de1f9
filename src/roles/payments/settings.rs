//! The `payments:` section: the one rule that declines a payment, so the compensation
//! path of the order saga can be exercised on purpose.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PaymentsSettings {
    /// Authorizations above this amount (minor units) are declined: a deterministic way
    /// to exercise the compensation path.
    pub decline_above_minor: u64,
}

impl Default for PaymentsSettings {
    fn default() -> Self {
        Self {
            decline_above_minor: 1_000_000,
        }
    }
}
