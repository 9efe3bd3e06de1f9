//! The registry's domain: registered instances, their leases, and the change index.
//!
//! Plain Rust with time passed in, so every rule is tested without a clock or a server:
//! a registration holds a lease of one TTL, renewed by the instance; a lease not renewed
//! in time is evicted; every change of membership moves the index forward by one, which
//! is what blocking queries wait on. Renewals do not move the index: they change no view.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use crate::platform::config::{check_base_url, check_instance_id};
use crate::platform::registry_api::{Catalog, Instance, Registration, RoleInstances};

const MAX_METADATA_ENTRIES: usize = 32;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 256;
const MAX_VERSION: usize = 64;

#[derive(Debug, Clone)]
struct Lease {
    instance: Instance,
    expires: Instant,
}

#[derive(Debug, Clone)]
pub struct LeaseTable {
    leases: BTreeMap<(String, String), Lease>,
    index: u64,
    ttl: Duration,
}

impl LeaseTable {
    pub fn new(ttl: Duration) -> LeaseTable {
        LeaseTable {
            leases: BTreeMap::new(),
            index: 0,
            ttl,
        }
    }

    /// Rebuilds the table after a restart. Every lease gets one full TTL of grace, so
    /// live instances renew into it instead of being evicted for the registry's downtime.
    pub fn restore(instances: Vec<Instance>, index: u64, ttl: Duration, now: Instant) -> Self {
        let leases = instances
            .into_iter()
            .map(|instance| {
                let key = (instance.role.clone(), instance.instance_id.clone());
                let lease = Lease {
                    instance,
                    expires: now + ttl,
                };
                (key, lease)
            })
            .collect();
        LeaseTable { leases, index, ttl }
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Adds or refreshes a registration. Returns the stored instance when membership
    /// changed (new instance, or new address / version / metadata), `None` when it was
    /// only a renewal in disguise.
    pub fn register(&mut self, reg: Registration, now: Instant, now_ms: u64) -> Option<Instance> {
        let key = (reg.role.clone(), reg.instance_id.clone());
        let expires = now + self.ttl;
        if let Some(lease) = self.leases.get_mut(&key) {
            lease.expires = expires;
            lease.instance.renewed_at_ms = now_ms;
            let same = lease.instance.address == reg.address
                && lease.instance.version == reg.version
                && lease.instance.metadata == reg.metadata;
            if same {
                return None;
            }
            lease.instance.address = reg.address;
            lease.instance.version = reg.version;
            lease.instance.metadata = reg.metadata;
            self.index += 1;
            return Some(lease.instance.clone());
        }
        let instance = Instance {
            role: reg.role,
            instance_id: reg.instance_id,
            address: reg.address,
            version: reg.version,
            metadata: reg.metadata,
            registered_at_ms: now_ms,
            renewed_at_ms: now_ms,
        };
        self.leases.insert(
            key,
            Lease {
                instance: instance.clone(),
                expires,
            },
        );
        self.index += 1;
        Some(instance)
    }

    /// Extends a lease. `false` if the registry does not know the instance.
    pub fn renew(&mut self, role: &str, id: &str, now: Instant, now_ms: u64) -> bool {
        match self.leases.get_mut(&(role.to_string(), id.to_string())) {
            Some(lease) => {
                lease.expires = now + self.ttl;
                lease.instance.renewed_at_ms = now_ms;
                true
            }
            None => false,
        }
    }

    pub fn deregister(&mut self, role: &str, id: &str) -> Option<Instance> {
        let removed = self.leases.remove(&(role.to_string(), id.to_string()))?;
        self.index += 1;
        Some(removed.instance)
    }

    /// Removes every lease that expired at `now`; the index moves once per eviction batch.
    pub fn evict_expired(&mut self, now: Instant) -> Vec<Instance> {
        let expired: Vec<_> = self
            .leases
            .iter()
            .filter(|(_, lease)| lease.expires <= now)
            .map(|(key, _)| key.clone())
            .collect();
        let evicted: Vec<Instance> = expired
            .into_iter()
            .filter_map(|key| self.leases.remove(&key))
            .map(|lease| lease.instance)
            .collect();
        if !evicted.is_empty() {
            self.index += 1;
        }
        evicted
    }

    pub fn catalog(&self) -> Catalog {
        let mut roles: BTreeMap<String, Vec<Instance>> = BTreeMap::new();
        for lease in self.leases.values() {
            roles
                .entry(lease.instance.role.clone())
                .or_default()
                .push(lease.instance.clone());
        }
        Catalog {
            index: self.index,
            roles,
        }
    }

    pub fn role(&self, role: &str) -> RoleInstances {
        RoleInstances {
            index: self.index,
            role: role.to_string(),
            instances: self
                .leases
                .values()
                .filter(|l| l.instance.role == role)
                .map(|l| l.instance.clone())
                .collect(),
        }
    }
}

/// Checks a registration before anything is written; the message says what is wrong.
pub fn validate(reg: &Registration, known_roles: &[String]) -> Result<(), String> {
    if !known_roles.iter().any(|r| r == &reg.role) {
        return Err(format!(
            "unknown role `{}`; valid roles: {}",
            reg.role,
            known_roles.join(", ")
        ));
    }
    check_instance_id(&reg.instance_id).map_err(|e| format!("instance_id: {e}"))?;
    check_base_url(&reg.address).map_err(|e| format!("address: {e}"))?;
    if reg.version.is_empty()
        || reg.version.len() > MAX_VERSION
        || !reg.version.bytes().all(|b| b.is_ascii_graphic())
    {
        return Err(format!(
            "version: expected 1 to {MAX_VERSION} printable characters"
        ));
    }
    if reg.metadata.len() > MAX_METADATA_ENTRIES {
        return Err(format!("metadata: at most {MAX_METADATA_ENTRIES} entries"));
    }
    for (k, v) in &reg.metadata {
        if k.is_empty() || k.len() > MAX_METADATA_KEY || v.len() > MAX_METADATA_VALUE {
            return Err(format!(
                "metadata: keys are 1 to {MAX_METADATA_KEY} bytes, values at most {MAX_METADATA_VALUE}"
            ));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reg(role: &str, id: &str, addr: &str) -> Registration {
        Registration {
            role: role.into(),
            instance_id: id.into(),
            address: addr.into(),
            version: "1".into(),
            metadata: Default::default(),
        }
    }

    const TTL: Duration = Duration::from_secs(3);

    #[test]
    fn register_moves_index_renew_does_not() {
        let mut t = LeaseTable::new(TTL);
        let now = Instant::now();
        assert!(t
            .register(reg("orders", "a", "http://h:1"), now, 1)
            .is_some());
        assert_eq!(t.index(), 1);
        assert!(t
            .register(reg("orders", "a", "http://h:1"), now, 2)
            .is_none());
        assert!(t.renew("orders", "a", now, 3));
        assert_eq!(t.index(), 1);
        assert!(t
            .register(reg("orders", "a", "http://h:2"), now, 4)
            .is_some());
        assert_eq!(t.index(), 2);
    }

    #[test]
    fn unrenewed_lease_is_evicted_after_ttl() {
        let mut t = LeaseTable::new(TTL);
        let start = Instant::now();
        t.register(reg("orders", "a", "http://h:1"), start, 0);
        t.register(reg("orders", "b", "http://h:2"), start, 0);
        assert!(t.renew("orders", "b", start + Duration::from_secs(2), 0));
        assert!(t
            .evict_expired(start + Duration::from_millis(2999))
            .is_empty());
        let evicted = t.evict_expired(start + TTL);
        assert_eq!(evicted.len(), 1);
        assert_eq!(evicted[0].instance_id, "a");
        assert_eq!(t.catalog().instances("orders").len(), 1);
    }

    #[test]
    fn restore_grants_a_full_ttl_of_grace() {
        let mut t = LeaseTable::new(TTL);
        let start = Instant::now();
        t.register(reg("orders", "a", "http://h:1"), start, 0);
        let saved = t.catalog();
        let later = start + Duration::from_secs(60);
        let mut restored =
            LeaseTable::restore(saved.instances("orders").to_vec(), saved.index, TTL, later);
        assert!(restored.evict_expired(later + TTL / 2).is_empty());
        assert!(restored.renew("orders", "a", later + TTL / 2, 0));
        assert_eq!(restored.index(), saved.index);
    }

    #[test]
    fn deregister_unknown_is_none() {
        let mut t = LeaseTable::new(TTL);
        assert!(t.deregister("orders", "x").is_none());
        assert_eq!(t.index(), 0);
    }

    #[test]
    fn validation_names_the_problem() {
        let roles = vec!["orders".to_string()];
        assert!(validate(&reg("orders", "a", "http://h:1"), &roles).is_ok());
        assert!(validate(&reg("nope", "a", "http://h:1"), &roles)
            .unwrap_err()
            .contains("unknown role"));
        assert!(validate(&reg("orders", "a/b", "http://h:1"), &roles)
            .unwrap_err()
            .starts_with("instance_id"));
        assert!(validate(&reg("orders", "a", "h:1"), &roles)
            .unwrap_err()
            .starts_with("address"));
    }
}
