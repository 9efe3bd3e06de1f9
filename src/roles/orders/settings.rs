//! The `orders:` section: how long a create waits for its saga, and how a saga step
//! waits out a peer that is unavailable.

use std::time::Duration;

use serde::{Deserialize, Serialize};
use svc_platform::config::PositiveDuration;

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct OrdersSettings {
    /// How long a create call waits for the saga to end before answering 202.
    #[serde(with = "humantime_serde")]
    pub create_wait: Duration,
    /// Longest pause between retries of a saga step whose peer is unavailable.
    pub step_retry_max: PositiveDuration,
}

impl Default for OrdersSettings {
    fn default() -> Self {
        Self {
            create_wait: Duration::from_secs(2),
            step_retry_max: PositiveDuration::from_secs(5),
        }
    }
}
