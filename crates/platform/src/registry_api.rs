//! The registry's wire types, shared by the registry role and every client of it.
//!
//! They live in the platform because every instance speaks this protocol; the registry
//! role implements it. Incoming types reject unknown fields so a typo is a 400, not a
//! silently ignored value.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Header carrying the registry's current index on every read.
/// The role name registry certificates carry: what every registry client expects to
/// be talking to (the registry is the one role the platform itself speaks to).
pub(crate) const REGISTRY_ROLE: &str = "registry";
pub const INDEX_HEADER: &str = "x-svc-index";

/// What an instance sends to register.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    pub role: String,
    pub instance_id: String,
    /// Base URL peers use to reach the instance, e.g. `http://10.0.0.5:41234`.
    pub address: String,
    pub version: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
}

/// A registered instance as the registry reports it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Instance {
    pub role: String,
    pub instance_id: String,
    pub address: String,
    pub version: String,
    #[serde(default)]
    pub metadata: BTreeMap<String, String>,
    /// Unix milliseconds of the first registration.
    pub registered_at_ms: u64,
    /// Unix milliseconds of the last renewal (or registration).
    pub renewed_at_ms: u64,
}

/// The registry's answer to register and renew: how to keep the lease alive.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq)]
pub struct LeaseGrant {
    pub lease_ttl_ms: u64,
    pub renew_interval_ms: u64,
    pub index: u64,
}

/// Instances of one role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct RoleInstances {
    pub index: u64,
    pub role: String,
    pub instances: Vec<Instance>,
}

/// Every registered instance, by role.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
pub struct Catalog {
    pub index: u64,
    pub roles: BTreeMap<String, Vec<Instance>>,
}

impl Catalog {
    pub fn instances(&self, role: &str) -> &[Instance] {
        self.roles.get(role).map(Vec::as_slice).unwrap_or(&[])
    }

    pub(crate) fn len(&self) -> usize {
        self.roles.values().map(Vec::len).sum()
    }
}
