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
//!
//! Changes are made in place and cost O(log n): the table is never copied. Each change
//! of membership returns a [`Change`]: the rows it touched with their images before and
//! after, which is both what to persist and how to undo it ([`LeaseTable::undo`]) if
//! persisting fails. A registered instance is kept compactly ([`Member`], shared by
//! `Arc` with the changes that name it) and written out as the wire's `Instance` only
//! when read or persisted (`catalog_json.rs`).

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;
use std::sync::Arc;
use std::time::{Duration, Instant};

use svc_platform::config::{check_base_url, check_instance_id};
use svc_platform::registry_api::{Instance, Registration};
use svc_platform::shards::MAX_SHARDS;

/// The metadata key an instance of a stateful role names its shard with.
pub const SHARD_KEY: &str = "shard";

const MAX_METADATA_ENTRIES: usize = 32;
const MAX_METADATA_KEY: usize = 64;
const MAX_METADATA_VALUE: usize = 256;
const MAX_VERSION: usize = 64;

/// What an instance registered, as the registry keeps it: the registration less its
/// role (the key of its [`RoleLeases`]), in boxed strings and a sorted slice instead of
/// `String`s and a map, and the shard it claims parsed once.
#[derive(Debug, PartialEq, Eq)]
pub struct Member {
    pub instance_id: Arc<str>,
    pub address: Box<str>,
    pub version: Box<str>,
    /// `metadata` of the registration, sorted by key.
    pub metadata: Box<[(Box<str>, Box<str>)]>,
    /// `metadata.shard` as a number, if it is one.
    pub shard: Option<u32>,
    /// Unix milliseconds of the first registration.
    pub registered_at_ms: u64,
}

impl Member {
    fn new(instance_id: Arc<str>, reg: Registration, registered_at_ms: u64) -> Member {
        let shard = shard_in(&reg.metadata);
        Member {
            instance_id,
            address: reg.address.into_boxed_str(),
            version: reg.version.into_boxed_str(),
            metadata: reg
                .metadata
                .into_iter()
                .map(|(k, v)| (k.into_boxed_str(), v.into_boxed_str()))
                .collect(),
            shard,
            registered_at_ms,
        }
    }

    fn from_instance(instance: Instance) -> Member {
        let registered_at_ms = instance.registered_at_ms;
        let reg = Registration {
            role: String::new(),
            instance_id: String::new(),
            address: instance.address,
            version: instance.version,
            metadata: instance.metadata,
        };
        Member::new(instance.instance_id.into(), reg, registered_at_ms)
    }

    /// Whether `reg` registers exactly this (then it is only a renewal).
    fn same_as(&self, reg: &Registration) -> bool {
        *self.address == *reg.address
            && *self.version == *reg.version
            && self.metadata.len() == reg.metadata.len()
            && self
                .metadata
                .iter()
                .zip(&reg.metadata)
                .all(|((k, v), (rk, rv))| **k == **rk && **v == **rv)
    }

    /// The wire's `Instance` (allocates: for tests and log lines, not for bulk reads).
    pub fn to_instance(&self, role: &str, renewed_at_ms: u64) -> Instance {
        Instance {
            role: role.to_string(),
            instance_id: self.instance_id.to_string(),
            address: self.address.to_string(),
            version: self.version.to_string(),
            metadata: self
                .metadata
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            registered_at_ms: self.registered_at_ms,
            renewed_at_ms,
        }
    }
}

/// One registration and its lease. Cloning it shares the [`Member`].
#[derive(Debug, Clone)]
pub struct Lease {
    pub member: Arc<Member>,
    pub expires: Instant,
    /// Unix milliseconds of the last renewal (or registration).
    pub renewed_at_ms: u64,
}

/// The leases of one role, by instance id, and the shards they claim.
#[derive(Debug, Default)]
pub struct RoleLeases {
    pub leases: BTreeMap<Arc<str>, Lease>,
    /// `(shard, instance id)` of every lease whose metadata names a shard: the holders
    /// of a shard are found in O(log n), not by a scan.
    claims: BTreeSet<(u32, Arc<str>)>,
}

impl RoleLeases {
    /// Puts `lease` under its id (or removes the id with `None`), keeping `claims` in
    /// step; returns what was there.
    fn put(&mut self, id: &Arc<str>, lease: Option<Lease>) -> Option<Lease> {
        let before = match lease {
            Some(lease) => {
                if let Some(shard) = lease.member.shard {
                    self.claims.insert((shard, id.clone()));
                }
                self.leases.insert(id.clone(), lease)
            }
            None => self.leases.remove(id),
        };
        if let Some(shard) = before.as_ref().and_then(|b| b.member.shard) {
            let still = self.leases.get(id).and_then(|l| l.member.shard) == Some(shard);
            if !still {
                self.claims.remove(&(shard, id.clone()));
            }
        }
        before
    }

    /// The leases that claim `shard`, in instance id order.
    fn claiming(&self, shard: u32) -> impl Iterator<Item = &Lease> {
        let from = (shard, Arc::<str>::from(""));
        self.claims
            .range((Bound::Included(from), Bound::Unbounded))
            .take_while(move |(s, _)| *s == shard)
            .filter_map(|(_, id)| self.leases.get(id))
    }
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

/// One row a change touched: its lease before (to undo) and after (to persist; `None`:
/// removed).
#[derive(Debug, Clone)]
pub struct RowChange {
    pub role: Arc<str>,
    pub instance_id: Arc<str>,
    pub before: Option<Lease>,
    pub after: Option<Lease>,
}

/// A change of membership made in place: the index it moved the table to and the rows
/// it touched. Persisting writes `after` of each row and the index; undoing restores
/// `before` of each row, last row first.
#[derive(Debug, Clone)]
pub struct Change {
    pub index: u64,
    pub rows: Vec<RowChange>,
}

/// Registrations and their leases, by role and instance id, with the change index.
/// Deliberately not `Clone`: a change never copies the table.
#[derive(Debug)]
pub struct LeaseTable {
    pub(super) roles: BTreeMap<Arc<str>, RoleLeases>,
    index: u64,
    ttl: Duration,
    /// Roles whose instances each own one shard (the stateful ones).
    sharded: BTreeSet<String>,
}

impl LeaseTable {
    pub fn new(ttl: Duration) -> LeaseTable {
        LeaseTable {
            roles: BTreeMap::new(),
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
        let mut table = LeaseTable::new(ttl);
        table.index = index;
        for instance in instances {
            let role = table.role_key(&instance.role);
            let renewed_at_ms = instance.renewed_at_ms;
            let member = Arc::new(Member::from_instance(instance));
            let id = member.instance_id.clone();
            let lease = Lease {
                member,
                expires: now + ttl,
                renewed_at_ms,
            };
            table.role_mut(&role).put(&id, Some(lease));
        }
        table
    }

    pub fn index(&self) -> u64 {
        self.index
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    /// How many instances hold a lease.
    pub fn instance_count(&self) -> usize {
        self.roles.values().map(|r| r.leases.len()).sum()
    }

    /// The shared name of `role` (one allocation per role, ever).
    fn role_key(&self, role: &str) -> Arc<str> {
        match self.roles.get_key_value(role) {
            Some((key, _)) => key.clone(),
            None => Arc::from(role),
        }
    }

    fn role_mut(&mut self, role: &Arc<str>) -> &mut RoleLeases {
        self.roles.entry(role.clone()).or_default()
    }

    /// The lease of `role`/`id`, if it holds one.
    pub fn lease(&self, role: &str, id: &str) -> Option<&Lease> {
        self.roles.get(role)?.leases.get(id)
    }

    /// Adds or refreshes a registration. Returns the [`Change`] when membership changed
    /// (new instance, or new address / version / metadata), `None` when it was only a
    /// renewal in disguise, and [`ShardHeld`] (changing nothing) when another live
    /// instance holds the shard it claims.
    pub fn register(
        &mut self,
        reg: Registration,
        now: Instant,
        now_ms: u64,
    ) -> Result<Option<Change>, ShardHeld> {
        self.check_shard_free(&reg, now)?;
        let expires = now + self.ttl;
        let role = self.role_key(&reg.role);
        let leases = self.role_mut(&role);
        if let Some(lease) = leases.leases.get_mut(reg.instance_id.as_str()) {
            if lease.member.same_as(&reg) {
                lease.expires = expires;
                lease.renewed_at_ms = now_ms;
                return Ok(None);
            }
        }
        let (id, registered_at_ms) = match leases.leases.get_key_value(reg.instance_id.as_str()) {
            Some((id, lease)) => (id.clone(), lease.member.registered_at_ms),
            None => (Arc::from(reg.instance_id.as_str()), now_ms),
        };
        let after = Lease {
            member: Arc::new(Member::new(id.clone(), reg, registered_at_ms)),
            expires,
            renewed_at_ms: now_ms,
        };
        let before = leases.put(&id, Some(after.clone()));
        self.index += 1;
        Ok(Some(Change {
            index: self.index,
            rows: vec![RowChange {
                role,
                instance_id: id,
                before,
                after: Some(after),
            }],
        }))
    }

    /// Refuses `reg` if it claims a shard another instance holds with a live lease. A
    /// lease past its deadline no longer counts, even before the evictor removes it.
    fn check_shard_free(&self, reg: &Registration, now: Instant) -> Result<(), ShardHeld> {
        if !self.sharded.contains(&reg.role) {
            return Ok(());
        }
        let Some(shard) = shard_in(&reg.metadata) else {
            return Ok(());
        };
        let Some(leases) = self.roles.get(reg.role.as_str()) else {
            return Ok(());
        };
        let holder = leases
            .claiming(shard)
            .find(|lease| *lease.member.instance_id != *reg.instance_id && lease.expires > now);
        match holder {
            None => Ok(()),
            Some(lease) => Err(ShardHeld {
                role: reg.role.clone(),
                shard,
                holder: lease.member.instance_id.to_string(),
                address: lease.member.address.to_string(),
            }),
        }
    }

    /// Extends a lease. `false` if the registry does not know the instance.
    pub fn renew(&mut self, role: &str, id: &str, now: Instant, now_ms: u64) -> bool {
        let lease = self.roles.get_mut(role).and_then(|r| r.leases.get_mut(id));
        match lease {
            Some(lease) => {
                lease.expires = now + self.ttl;
                lease.renewed_at_ms = now_ms;
                true
            }
            None => false,
        }
    }

    /// The address `role`/`id` registered, if it holds a lease.
    pub fn address_of(&self, role: &str, id: &str) -> Option<&str> {
        self.lease(role, id).map(|l| &*l.member.address)
    }

    /// Removes a registration; the [`Change`] names what was removed.
    pub fn deregister(&mut self, role: &str, id: &str) -> Option<Change> {
        let (role, leases) = self.roles.get_key_value(role)?;
        let role = role.clone();
        let id = leases.leases.get_key_value(id)?.0.clone();
        let before = self.role_mut(&role).put(&id, None);
        self.index += 1;
        Some(Change {
            index: self.index,
            rows: vec![RowChange {
                role,
                instance_id: id,
                before,
                after: None,
            }],
        })
    }

    /// Removes every lease that expired at `now`; the index moves once per eviction batch.
    /// Scans every lease (a few microseconds per thousand), which keeps renewals at one
    /// map lookup.
    pub fn evict_expired(&mut self, now: Instant) -> Option<Change> {
        let expired: Vec<(Arc<str>, Arc<str>)> = self
            .roles
            .iter()
            .flat_map(|(role, leases)| {
                leases
                    .leases
                    .iter()
                    .filter(|(_, lease)| lease.expires <= now)
                    .map(move |(id, _)| (role.clone(), id.clone()))
            })
            .collect();
        if expired.is_empty() {
            return None;
        }
        let rows = expired
            .into_iter()
            .map(|(role, id)| {
                let before = self.role_mut(&role).put(&id, None);
                RowChange {
                    role,
                    instance_id: id,
                    before,
                    after: None,
                }
            })
            .collect();
        self.index += 1;
        Some(Change {
            index: self.index,
            rows,
        })
    }

    /// Undoes `change` (the latest change not yet undone): every row gets its image from
    /// before it, last row first. A lease renewed since keeps its later deadline. The
    /// index stays where it is; see [`LeaseTable::skip_index`].
    pub fn undo(&mut self, change: &Change) {
        for row in change.rows.iter().rev() {
            let leases = self.role_mut(&row.role);
            let current = leases.leases.get(&row.instance_id);
            let restored = row.before.clone().map(|mut before| {
                if let Some(current) = current {
                    before.expires = before.expires.max(current.expires);
                    before.renewed_at_ms = before.renewed_at_ms.max(current.renewed_at_ms);
                }
                before
            });
            leases.put(&row.instance_id, restored);
        }
    }

    /// Moves the index by one without a change of rows: after changes were undone, so
    /// that the index of the undone state is never reused for another and every watcher
    /// that may have seen one reads again.
    pub fn skip_index(&mut self) -> u64 {
        self.index += 1;
        self.index
    }

    /// Every lease, for the rules that move deadlines without a change of membership
    /// (grace after a stall: `eviction.rs`).
    pub(super) fn leases_mut(&mut self) -> impl Iterator<Item = &mut Lease> {
        self.roles.values_mut().flat_map(|r| r.leases.values_mut())
    }

    /// Every lease, role by role, in instance id order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Lease)> {
        self.roles
            .iter()
            .flat_map(|(role, r)| r.leases.values().map(move |l| (&**role, l)))
    }

    /// The whole table as the wire's `Catalog` (through its JSON, as readers get it).
    #[cfg(test)]
    pub fn catalog(&self) -> svc_platform::registry_api::Catalog {
        let json = serde_json::to_vec(&super::catalog_json::CatalogJson(self)).unwrap();
        serde_json::from_slice(&json).unwrap()
    }

    /// The leases of `role`, in instance id order.
    pub fn role_leases(&self, role: &str) -> impl Iterator<Item = &Lease> {
        self.roles
            .get(role)
            .into_iter()
            .flat_map(|r| r.leases.values())
    }
}

/// The shard `metadata` claims, if it names one. Checked by [`validate`] first.
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
            .is_none());
        let evicted = t.evict_expired(start + TTL).unwrap();
        assert_eq!(evicted.rows.len(), 1);
        assert_eq!(&*evicted.rows[0].instance_id, "a");
        assert!(evicted.rows[0].after.is_none());
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
        assert!(restored.evict_expired(later + TTL / 2).is_none());
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

    /// The catalog without the index, to compare states across index moves.
    fn rows(t: &LeaseTable) -> String {
        serde_json::to_string(&t.catalog().roles).unwrap()
    }

    #[test]
    fn a_change_and_its_undo_leave_the_rows_as_they_were() {
        let mut t = sharded_table();
        let now = Instant::now();
        t.register(sharded_reg("orders", "a", "0"), now, 1).unwrap();
        t.register(sharded_reg("orders", "b", "1"), now, 1).unwrap();
        let before = rows(&t);
        let mut moved = sharded_reg("orders", "a", "2");
        moved.address = "http://a:9".into();
        let changes = [
            t.register(moved, now, 1).unwrap().unwrap(),
            t.register(sharded_reg("orders", "c", "0"), now, 1)
                .unwrap()
                .unwrap(),
            t.deregister("orders", "b").unwrap(),
            t.register(reg("gateway", "g", "http://g:1"), now, 1)
                .unwrap()
                .unwrap(),
        ];
        assert_eq!(t.index(), 6);
        assert_ne!(rows(&t), before);
        for change in changes.iter().rev() {
            t.undo(change);
        }
        assert_eq!(rows(&t), before);
        // The index never goes back: the undone state's indexes are never reused.
        assert_eq!(t.index(), 6);
        assert_eq!(t.skip_index(), 7);
        // The shard claims came back too: `a` holds 0 again, `b` holds 1, 2 is free.
        assert!(t.register(sharded_reg("orders", "x", "0"), now, 3).is_err());
        assert!(t.register(sharded_reg("orders", "x", "1"), now, 3).is_err());
        assert!(t.register(sharded_reg("orders", "x", "2"), now, 3).is_ok());
    }

    #[test]
    fn undoing_an_eviction_brings_the_leases_back() {
        let mut t = LeaseTable::new(TTL);
        let start = Instant::now();
        t.register(reg("orders", "a", "http://a:1"), start, 1)
            .unwrap();
        t.register(reg("orders", "b", "http://b:1"), start, 1)
            .unwrap();
        let before = rows(&t);
        let evicted = t.evict_expired(start + TTL).unwrap();
        assert_eq!(t.instance_count(), 0);
        t.undo(&evicted);
        assert_eq!(rows(&t), before);
        assert_eq!(t.instance_count(), 2);
    }

    #[test]
    fn undo_keeps_a_renewal_made_after_the_change() {
        let mut t = LeaseTable::new(TTL);
        let start = Instant::now();
        t.register(reg("orders", "a", "http://a:1"), start, 1)
            .unwrap();
        let moved = t
            .register(reg("orders", "a", "http://a:2"), start, 2)
            .unwrap()
            .unwrap();
        let later = start + Duration::from_secs(2);
        assert!(t.renew("orders", "a", later, 5));
        t.undo(&moved);
        let a = &t.catalog().roles["orders"][0];
        assert_eq!((a.address.as_str(), a.renewed_at_ms), ("http://a:1", 5));
        // The renewed deadline holds: not expired one TTL after the first registration.
        assert!(t.evict_expired(start + TTL).is_none());
    }

    #[test]
    fn a_member_that_moves_shard_releases_the_old_one() {
        let mut t = sharded_table();
        let now = Instant::now();
        t.register(sharded_reg("orders", "a", "0"), now, 0).unwrap();
        t.register(sharded_reg("orders", "a", "1"), now, 0).unwrap();
        assert!(t.register(sharded_reg("orders", "b", "0"), now, 0).is_ok());
        assert!(t.register(sharded_reg("orders", "c", "1"), now, 0).is_err());
        // Dropping the shard from its metadata releases it as well.
        t.register(reg("orders", "a", "http://a:1"), now, 0)
            .unwrap();
        assert!(t.register(sharded_reg("orders", "c", "1"), now, 0).is_ok());
    }

    #[test]
    fn restored_members_hold_their_shards() {
        let mut t = sharded_table();
        let now = Instant::now();
        t.register(sharded_reg("orders", "a", "3"), now, 0).unwrap();
        let saved = t.catalog();
        let mut restored =
            LeaseTable::restore(saved.instances("orders").to_vec(), saved.index, TTL, now)
                .with_sharded_roles(["orders".to_string()]);
        let refused = restored
            .register(sharded_reg("orders", "b", "3"), now, 0)
            .unwrap_err();
        assert_eq!(refused.holder, "a");
        assert_eq!(restored.catalog(), saved);
    }

    #[test]
    fn renewal_in_disguise_changes_nothing_but_the_lease() {
        let mut t = LeaseTable::new(TTL);
        let now = Instant::now();
        let mut r = reg("orders", "a", "http://a:1");
        r.metadata.insert("k".into(), "v".into());
        t.register(r.clone(), now, 1).unwrap();
        assert!(t.register(r.clone(), now, 2).unwrap().is_none());
        r.metadata.insert("k".into(), "w".into());
        assert!(t.register(r, now, 3).unwrap().is_some());
        let a = &t.catalog().roles["orders"][0];
        assert_eq!((a.registered_at_ms, a.renewed_at_ms), (1, 3));
    }
}
