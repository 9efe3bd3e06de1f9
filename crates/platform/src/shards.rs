//! Which shard of a stateful role owns an entity: the routing rules, in one place.
//!
//! Each instance of a stateful role owns one shard (its redb file), and every caller must
//! agree on where an entity lives without asking anyone. Two rules decide it:
//!
//! - An id the role minted carries its shard: `<kind>-<shard>-<unique>` (`ord-1-01hz…`).
//!   [`shard_in_id`] reads it back, so a call about an order goes to the shard that
//!   created it, whatever the shard counts are today.
//! - Anything keyed by a string the client chose (a SKU, an order id at payments, an
//!   `Idempotency-Key`) lives on `fnv1a64(key) % shards(role)` ([`ShardCounts::owner`]).
//!   FNV-1a is fixed by its specification, so every version of `svc` (and an operator's
//!   script) computes the same shard; std's hasher makes no such promise.
//!
//! The counts (`shards:` in the config, one number per stateful role, default 1) are a
//! property of the cluster: every instance must be given the same ones, and changing one
//! moves keys between shards, which needs a data migration `svc` does not do.
//!
//! A stateful instance holds its [`ShardOwnership`] and checks every call that writes
//! about an entity against it: one whose key belongs to another shard is refused with
//! [`Misdirected`] (421, naming the right shard) before anything is written, so a
//! misrouted call can never leave a second copy of an entity on the wrong shard.

use std::collections::BTreeMap;

use actix_web::http::StatusCode;
use serde::{Deserialize, Serialize};

use super::problem::Problem;

/// The most shards a role may have; also bounds the shard number an instance claims.
pub const MAX_SHARDS: u32 = 1024;

/// Shards per stateful role; a role not listed has one.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct ShardCounts(BTreeMap<String, u32>);

impl ShardCounts {
    /// How many shards `role` has (1 unless configured).
    pub fn count(&self, role: &str) -> u32 {
        self.0.get(role).copied().unwrap_or(1).max(1)
    }

    /// The shard of `role` that owns the entity keyed by `key`.
    pub fn owner(&self, role: &str, key: &str) -> u32 {
        shard_for_key(key, self.count(role))
    }

    /// Sets (or replaces) the count of `role`.
    fn set(&mut self, role: &str, count: u32) {
        self.0.insert(role.to_string(), count);
    }

    /// Every configured `(role, count)`.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&str, u32)> {
        self.0.iter().map(|(r, c)| (r.as_str(), *c))
    }

    /// Adds every count of `other`, replacing ours for the roles it names.
    pub(crate) fn merge(&mut self, other: &ShardCounts) {
        for (role, count) in other.iter() {
            self.set(role, count);
        }
    }

    /// Parses `role=count` items, e.g. from `--shards orders=2,inventory=2`.
    pub fn parse_list(items: &[String]) -> Result<ShardCounts, String> {
        let mut counts = ShardCounts::default();
        for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
            let (role, count) = item
                .split_once('=')
                .map(|(r, c)| (r.trim(), c.trim()))
                .filter(|(r, _)| !r.is_empty())
                .ok_or_else(|| format!("`{item}`: expected ROLE=COUNT, e.g. orders=2"))?;
            let count: u32 = count
                .parse()
                .map_err(|_| format!("`{item}`: COUNT must be a whole number"))?;
            if counts.0.insert(role.to_string(), count).is_some() {
                return Err(format!("role `{role}` is given twice"));
            }
        }
        Ok(counts)
    }
}

/// The shard of its role this instance holds, and the counts that place every key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShardOwnership {
    role: String,
    shard: u32,
    counts: ShardCounts,
}

/// A call about an entity that lives on another shard of this role: answered 421
/// (Misdirected Request), naming the shard that owns it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} `{key}` belongs to shard {owner} of {role}; this instance owns shard {shard}")]
pub struct Misdirected {
    /// What the key names, as the detail says it: `sku`, `order`, `Idempotency-Key`.
    what: &'static str,
    key: String,
    role: String,
    /// The shard that owns the key.
    pub(crate) owner: u32,
    /// The shard this instance holds.
    shard: u32,
}

impl From<Misdirected> for Problem {
    fn from(m: Misdirected) -> Problem {
        Problem::new(StatusCode::MISDIRECTED_REQUEST, m.to_string())
    }
}

impl ShardOwnership {
    /// Instance holding `shard` of `role`, in a cluster with `counts`.
    pub fn new(role: impl Into<String>, shard: u32, counts: ShardCounts) -> ShardOwnership {
        ShardOwnership {
            role: role.into(),
            shard,
            counts,
        }
    }

    /// How many shards this role has.
    pub(crate) fn count(&self) -> u32 {
        self.counts.count(&self.role)
    }

    /// An entity keyed by a string the client chose (a SKU, an order id at payments, an
    /// `Idempotency-Key`): it belongs to the shard the key hashes to.
    pub fn check_key(&self, what: &'static str, key: &str) -> Result<(), Misdirected> {
        self.check_owner(what, key, self.counts.owner(&self.role, key))
    }

    /// An entity whose id was minted with its shard (`ord-<shard>-…`). An id without a
    /// shard was minted by none, so no shard owns it: it passes, to be answered 404.
    pub fn check_id(&self, what: &'static str, id: &str) -> Result<(), Misdirected> {
        match shard_in_id(id) {
            Some(owner) => self.check_owner(what, id, owner),
            None => Ok(()),
        }
    }

    /// An entity whose owner the caller worked out by a rule of its own (an event's
    /// shard, see `events::check_delivery`).
    pub(crate) fn check_owner(
        &self,
        what: &'static str,
        key: &str,
        owner: u32,
    ) -> Result<(), Misdirected> {
        if owner == self.shard {
            return Ok(());
        }
        Err(Misdirected {
            what,
            key: key.to_string(),
            role: self.role.clone(),
            owner,
            shard: self.shard,
        })
    }
}

/// FNV-1a, 64 bit: a stable hash, identical on every platform and version.
fn fnv1a64(key: &str) -> u64 {
    const OFFSET: u64 = 0xcbf2_9ce4_8422_2325;
    const PRIME: u64 = 0x0000_0100_0000_01b3;
    key.bytes().fold(OFFSET, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(PRIME)
    })
}

/// The shard among `count` that owns `key`.
pub fn shard_for_key(key: &str, count: u32) -> u32 {
    // The remainder is below `count`, a u32, so the conversion cannot fail.
    u32::try_from(fnv1a64(key) % u64::from(count.max(1))).unwrap_or(0)
}

/// The shard an id minted as `<kind>-<shard>-<unique>` carries, if it has that shape.
pub fn shard_in_id(id: &str) -> Option<u32> {
    let mut parts = id.splitn(3, '-');
    let (kind, shard, unique) = (parts.next()?, parts.next()?, parts.next()?);
    if kind.is_empty() || unique.is_empty() || shard.is_empty() || shard.len() > 4 {
        return None;
    }
    // Digits only: `+1` or ` 1` would parse but are not what an instance mints.
    if !shard.bytes().all(|b| b.is_ascii_digit()) || (shard.len() > 1 && shard.starts_with('0')) {
        return None;
    }
    shard.parse().ok().filter(|s| *s < MAX_SHARDS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fnv1a64_matches_the_published_test_vectors() {
        // From the FNV specification (draft-eastlake-fnv): the hash must never change.
        assert_eq!(fnv1a64(""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a64("a"), 0xaf63_dc4c_8601_ec8c);
        assert_eq!(fnv1a64("foobar"), 0x8594_4171_f739_67e8);
    }

    #[test]
    fn keys_spread_over_every_shard_and_one_shard_takes_all() {
        let mut seen = [0u32; 4];
        for i in 0..400 {
            seen[shard_for_key(&format!("sku-{i}"), 4) as usize] += 1;
        }
        assert!(seen.iter().all(|n| *n > 50), "{seen:?}");
        assert_eq!(shard_for_key("anything", 1), 0);
        assert_eq!(shard_for_key("anything", 0), 0, "0 shards is read as 1");
    }

    #[test]
    fn counts_default_to_one_and_merge_per_role() {
        let mut counts = ShardCounts::parse_list(&["orders=2".into(), " inventory = 3 ".into()])
            .unwrap_or_default();
        assert_eq!((counts.count("orders"), counts.count("inventory")), (2, 3));
        assert_eq!(counts.count("payments"), 1);
        counts.merge(&ShardCounts::parse_list(&["orders=4".into()]).unwrap_or_default());
        assert_eq!((counts.count("orders"), counts.count("inventory")), (4, 3));
        assert_eq!(counts.owner("payments", "ord-0-x"), 0);
    }

    #[test]
    fn bad_lists_say_what_is_wrong() {
        let parse = |s: &str| ShardCounts::parse_list(&[s.to_string()]);
        assert!(parse("orders").unwrap_err().contains("ROLE=COUNT"));
        assert!(parse("=2").unwrap_err().contains("ROLE=COUNT"));
        assert!(parse("orders=two").unwrap_err().contains("whole number"));
        let twice = ShardCounts::parse_list(&["orders=2".into(), "orders=3".into()]);
        assert!(twice.unwrap_err().contains("twice"));
        assert_eq!(parse("").unwrap_or_default(), ShardCounts::default());
    }

    fn ownership(shard: u32) -> ShardOwnership {
        let counts = ShardCounts::parse_list(&["payments=2".into()]).unwrap_or_default();
        ShardOwnership::new("payments", shard, counts)
    }

    #[test]
    fn a_key_is_accepted_by_its_shard_only() {
        let on0 = (0..)
            .map(|i| format!("ord-0-{i}"))
            .find(|k| shard_for_key(k, 2) == 0);
        let on0 = on0.unwrap_or_default();
        assert_eq!(ownership(0).check_key("order", &on0), Ok(()));
        let refused = ownership(1).check_key("order", &on0);
        assert_eq!(
            refused,
            Err(Misdirected {
                what: "order",
                key: on0.clone(),
                role: "payments".into(),
                owner: 0,
                shard: 1,
            })
        );
    }

    #[test]
    fn one_shard_owns_every_key() {
        let alone = ShardOwnership::new("notifications", 0, ShardCounts::default());
        assert_eq!(alone.count(), 1);
        for key in ["a", "b", "ord-1-x", ""] {
            assert_eq!(alone.check_key("order", key), Ok(()), "{key}");
        }
    }

    #[test]
    fn an_id_is_accepted_by_the_shard_in_it() {
        assert_eq!(ownership(1).check_id("order", "ord-1-01hz"), Ok(()));
        let refused = ownership(0).check_id("order", "ord-1-01hz");
        assert_eq!(refused.map_err(|m| m.owner), Err(1));
        // Minted by no shard: nobody's, so not refused here (the handler answers 404).
        assert_eq!(ownership(0).check_id("order", "legacy"), Ok(()));
    }

    #[test]
    fn misdirected_is_a_421_problem_naming_the_owner() {
        let problem = Problem::from(ownership(0).check_owner("sku", "tea", 1).unwrap_err());
        assert_eq!(problem.status, 421);
        assert_eq!(problem.title, "Misdirected Request");
        assert_eq!(
            problem.detail,
            "sku `tea` belongs to shard 1 of payments; this instance owns shard 0"
        );
    }

    #[test]
    fn ids_give_back_the_shard_that_minted_them() {
        assert_eq!(shard_in_id("ord-0-01hzabc"), Some(0));
        assert_eq!(shard_in_id("ord-17-01hz-with-dashes"), Some(17));
        for bad in [
            "ord",
            "ord-1",
            "ord-1-",
            "-1-x",
            "ord--x",
            "ord-x-y",
            "ord-01-x",
            "ord-+1-x",
            "ord-99999-x",
            "ord-1024-x",
        ] {
            assert_eq!(shard_in_id(bad), None, "{bad}");
        }
    }
}
