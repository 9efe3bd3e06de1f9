//! The `inventory:` section: how long an uncommitted reservation holds its stock, and
//! how often expired ones are looked for.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use svc_platform::config::ConfigError;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventorySettings {
    /// A reservation never committed is released after this long.
    #[serde(with = "humantime_serde")]
    pub reservation_ttl: Duration,
    /// How often expired reservations are looked for.
    #[serde(with = "humantime_serde")]
    pub expiry_sweep: Duration,
}

impl Default for InventorySettings {
    fn default() -> Self {
        Self {
            reservation_ttl: Duration::from_secs(300),
            expiry_sweep: Duration::from_secs(1),
        }
    }
}

impl InventorySettings {
    pub fn check(&self, origin: &str) -> Result<(), ConfigError> {
        if self.reservation_ttl.is_zero() {
            return Err(ConfigError::new(
                origin,
                "inventory.reservation_ttl",
                "expected more than 0",
            ));
        }
        if self.expiry_sweep.is_zero() {
            return Err(ConfigError::new(
                origin,
                "inventory.expiry_sweep",
                "expected more than 0",
            ));
        }
        Ok(())
    }
}
