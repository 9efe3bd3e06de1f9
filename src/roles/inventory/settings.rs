//! The `inventory:` section: how long an uncommitted reservation holds its stock, and
//! how often expired ones are looked for. Both are more than 0 by their type.

use serde::{Deserialize, Serialize};
use svc_platform::config::PositiveDuration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventorySettings {
    /// A reservation never committed is released after this long.
    pub reservation_ttl: PositiveDuration,
    /// How often expired reservations are looked for.
    pub expiry_sweep: PositiveDuration,
}

impl Default for InventorySettings {
    fn default() -> Self {
        Self {
            reservation_ttl: PositiveDuration::from_secs(300),
            expiry_sweep: PositiveDuration::from_secs(1),
        }
    }
}
