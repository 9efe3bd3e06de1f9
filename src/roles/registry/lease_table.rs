//! The registry's domain: registered instances, their leases, and the change index.
//!
//! Plain Rust with time passed in, so every rule is tested without a clock or a server:
//! a registration holds a lease of one TTL, renewed by the instance; a lease not renewed
//! in time is evicted; every change of membership moves the index forward by one, which
//! is what blocking queries wait on. Renewals do not move the index: they change no view.
//!
//! Stateful roles are sharded: an instance of one claims a shard in `metadata.shard`, and
//! a shard has at most one live holder. A second instance claiming a shard whose holder
//! still has a live lease is refused ([`ShardHeld`]); once that lease expires or is
//! deregistered, the shard is free. Two holders would each mint ids for the same shard
//! from different files, and calls about those entities would reach either at random.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use svc_platform::config::{check_base_url, check_instance_id};
use svc_platform::registry_api::{Catalog, Instance, Registration, RoleInstances};
use svc_platform::shards::MAX_SHARDS;

/// The metadata key an instance of a stateful role names its shard with.
pub const SHARD_KEY: &str = "shard";

const MAX_METADATA_ENTRIES: usize = 32;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 256;
const MAX_VERSION: usize = 64;

#[derive(Debug, Clone)]
struct Lease {
    instance: Instance,
    expires: Instant,
}

/// A registration refused because another live instance holds the shard it claims.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("shard {shard} of {role} is held by {holder} ({address}); stop it or choose another shard")]
pub struct ShardHeld {
    pub role: String,
    pub shard: u32,
    pub holder: String,
    pub address: String,
}

#[derive(Debug, Clone)]
pub struct LeaseTable {
    leases: BTreeMap<(String, String), Lease>,
    index: u64,
    ttl: Duration,
    /// Roles whose instances each own one shard (the stateful ones).
    sharded: BTreeSet<String>,
}

impl LeaseTable {
    pub fn new(ttl: Duration) -> LeaseTable {
        LeaseTable {
            leases: BTreeMap::new(),
            index: 0,
            ttl,
            sharded: BTreeSet::new(),
        }
    }

    /// Enforces one live holder per shard for `roles`.
    pub fn with_sharded_roles(mut self, roles: impl IntoIterator<Item = String>) -> Self {
        self.sharded = roles.into_iter().collect();
        self
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
        LeaseTable {
            leases,
            index,
            ttl,
            sharded: BTreeSet::new(),
        }
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// Adds or refreshes a registration. Returns the stored instance when membership
    /// changed (new instance, or new address / version / metadata), `None` when it was
    /// only a renewal in disguise, and [`ShardHeld`] (changing nothing) when another
    /// live instance holds the shard it claims.
    pub fn register(
        &mut self,
        reg: Registration,
        now: Instant,
        now_ms: u64,
    ) -> Result<Option<Instance>, ShardHeld> {
        self.check_shard_free(&reg, now)?;
        let key = (reg.role.clone(), reg.instance_id.clone());
        let expires = now + self.ttl;
        if let Some(lease) = self.leases.get_mut(&key) {
            lease.expires = expires;
            lease.instance.renewed_at_ms = now_ms;
            let same = lease.instance.address == reg.address
                && lease.instance.version == reg.version
                && lease.instance.metadata == reg.metadata;
            if same {
                return Ok(None);
            }
            lease.instance.address = reg.address;
            lease.instance.version = reg.version;
            lease.instance.metadata = reg.metadata;
            self.index += 1;
            return Ok(Some(lease.instance.clone()));
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
        Ok(Some(instance))
    }

    /// Refuses `reg` if it claims a shard another instance holds with a live lease. A
    /// lease past its deadline no longer counts, even before the evictor removes it.
    fn check_shard_free(&self, reg: &Registration, now: Instant) -> Result<(), ShardHeld> {
        if !self.sharded.contains(&reg.role) {
            return Ok(());
        }
        let Some(shard) = claimed_shard(reg) else {
            return Ok(());
        };
        let holder = self.leases.values().find(|lease| {
            lease.instance.role == reg.role
                && lease.instance.instance_id != reg.instance_id
                && lease.expires > now
                && shard_in(&lease.instance.metadata) == Some(shard)
        });
        match holder {
            None => Ok(()),
            Some(lease) => Err(ShardHeld {
                role: reg.role.clone(),
                shard,
                holder: lease.instance.instance_id.clone(),
                address: lease.instance.address.clone(),
            }),
        }
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

    /// The address `role`/`id` registered, if it holds a lease.
    pub fn address_of(&self, role: &str, id: &str) -> Option<String> {
        self.leases
            .get(&(role.to_string(), id.to_string()))
            .map(|l| l.instance.address.clone())
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

/// The shard a registration claims, if it names one. Checked by [`validate`] first.
fn claimed_shard(reg: &Registration) -> Option<u32> {
    shard_in(&reg.metadata)
}

fn shard_in(metadata: &BTreeMap<String, String>) -> Option<u32> {
    metadata.get(SHARD_KEY).and_then(|s| s.parse().ok())
}

/// Checks a registration before anything is written; the message says what is wrong.
/// An instance of a `sharded` role may name its shard in `metadata.shard` (every `svc`
/// instance does); a registration without one claims no shard and is only ever sent
/// calls that are not about an entity.
pub fn validate(
    reg: &Registration,
    known_roles: &[String],
    sharded: &BTreeSet<String>,
) -> Result<(), String> {
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
    if let Some(shard) = reg.metadata.get(SHARD_KEY) {
        let canonical = shard
            .parse::<u32>()
            .ok()
            .filter(|n| *n < MAX_SHARDS && n.to_string() == *shard);
        if sharded.contains(&reg.role) && canonical.is_none() {
            return Err(format!(
                "metadata.shard: `{shard}` is not a shard number from 0 to {}",
                MAX_SHARDS - 1
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
            .unwrap()
            .is_some());
        assert_eq!(t.index(), 1);
        assert!(t
            .register(reg("orders", "a", "http://h:1"), now, 2)
            .unwrap()
            .is_none());
        assert!(t.renew("orders", "a", now, 3));
        assert_eq!(t.index(), 1);
        assert!(t
            .register(reg("orders", "a", "http://h:2"), now, 4)
            .unwrap()
            .is_some());
        assert_eq!(t.index(), 2);
    }

    #[test]
    fn unrenewed_lease_is_evicted_after_ttl() {
        let mut t = LeaseTable::new(TTL);
        let start = Instant::now();
        t.register(reg("orders", "a", "http://h:1"), start, 0)
            .unwrap();
        t.register(reg("orders", "b", "http://h:2"), start, 0)
            .unwrap();
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
        t.register(reg("orders", "a", "http://h:1"), start, 0)
            .unwrap();
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
        let sharded = BTreeSet::new();
        assert!(validate(&reg("orders", "a", "http://h:1"), &roles, &sharded).is_ok());
        assert!(validate(&reg("nope", "a", "http://h:1"), &roles, &sharded)
            .unwrap_err()
            .contains("unknown role"));
        assert!(
            validate(&reg("orders", "a/b", "http://h:1"), &roles, &sharded)
                .unwrap_err()
                .starts_with("instance_id")
        );
        assert!(validate(&reg("orders", "a", "h:1"), &roles, &sharded)
            .unwrap_err()
            .starts_with("address"));
    }

    fn sharded_reg(role: &str, id: &str, shard: &str) -> Registration {
        let mut r = reg(role, id, &format!("http://{id}:1"));
        r.metadata.insert(SHARD_KEY.into(), shard.into());
        r
    }

    fn sharded_table() -> LeaseTable {
        LeaseTable::new(TTL).with_sharded_roles(["orders".to_string()])
    }

    #[test]
    fn a_shard_number_must_be_canonical_for_sharded_roles() {
        let roles = vec!["orders".to_string(), "gateway".to_string()];
        let sharded: BTreeSet<String> = ["orders".to_string()].into();
        assert!(validate(&sharded_reg("orders", "a", "1"), &roles, &sharded).is_ok());
        for bad in ["x", "-1", "01", "+1", "1024", ""] {
            let e = validate(&sharded_reg("orders", "a", bad), &roles, &sharded).unwrap_err();
            assert!(e.starts_with("metadata.shard"), "{bad}: {e}");
        }
        // Stateless roles may carry any `shard` metadata: it means nothing there.
        assert!(validate(&sharded_reg("gateway", "g", "x"), &roles, &sharded).is_ok());
    }

    #[test]
    fn a_second_live_holder_of_a_shard_is_refused_and_changes_nothing() {
        let mut t = sharded_table();
        let now = Instant::now();
        t.register(sharded_reg("orders", "orders-1", "1"), now, 0)
            .unwrap();
        let before = t.catalog();
        let refused = t
            .register(sharded_reg("orders", "orders-1b", "1"), now, 0)
            .unwrap_err();
        assert_eq!(
            refused.to_string(),
            "shard 1 of orders is held by orders-1 (http://orders-1:1); \
             stop it or choose another shard"
        );
        assert_eq!(t.catalog(), before, "a refusal changes nothing");
        // Other shards, and other roles with the same shard number, are free.
        assert!(t
            .register(sharded_reg("orders", "orders-0", "0"), now, 0)
            .is_ok());
        assert!(t
            .register(sharded_reg("payments", "p", "1"), now, 0)
            .is_ok());
    }

    #[test]
    fn the_holder_itself_may_register_again_even_with_a_new_address() {
        let mut t = sharded_table();
        let now = Instant::now();
        t.register(sharded_reg("orders", "orders-1", "1"), now, 0)
            .unwrap();
        let mut moved = sharded_reg("orders", "orders-1", "1");
        moved.address = "http://elsewhere:2".into();
        assert!(t.register(moved, now, 1).unwrap().is_some());
    }

    #[test]
    fn a_shard_is_free_once_its_holder_expires_or_leaves() {
        let mut t = sharded_table();
        let start = Instant::now();
        t.register(sharded_reg("orders", "orders-1", "1"), start, 0)
            .unwrap();
        // Expired but not yet evicted: the lease no longer holds the shard.
        let later = start + TTL;
        assert!(t
            .register(sharded_reg("orders", "orders-1b", "1"), later, 0)
            .is_ok());
        // Now orders-1b holds it; after it deregisters, orders-1 may take it back.
        assert!(t
            .register(sharded_reg("orders", "orders-1", "1"), later, 0)
            .is_err());
        t.deregister("orders", "orders-1b");
        assert!(t
            .register(sharded_reg("orders", "orders-1", "1"), later, 0)
            .is_ok());
    }

    #[test]
    fn moving_to_a_held_shard_is_refused_too() {
        let mut t = sharded_table();
        let now = Instant::now();
        t.register(sharded_reg("orders", "a", "0"), now, 0).unwrap();
        t.register(sharded_reg("orders", "b", "1"), now, 0).unwrap();
        assert!(t.register(sharded_reg("orders", "b", "0"), now, 0).is_err());
        // A registration naming no shard claims none.
        assert!(t.register(reg("orders", "c", "http://c:1"), now, 0).is_ok());
    }
}
