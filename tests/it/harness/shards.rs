//! Where an entity lives, computed as docs/ARCHITECTURE.md defines the routing rules,
//! independently of the code under test.

/// FNV-1a 64, as the routing rules in docs/ARCHITECTURE.md define it: tests compute where
/// a key lives independently of the code under test.
pub fn fnv1a64(key: &str) -> u64 {
    key.bytes().fold(0xcbf2_9ce4_8422_2325, |hash, byte| {
        (hash ^ u64::from(byte)).wrapping_mul(0x0000_0100_0000_01b3)
    })
}

/// The shard among `count` that owns `key`.
pub fn shard_for_key(key: &str, count: u32) -> u32 {
    (fnv1a64(key) % u64::from(count)) as u32
}

/// `n` keys `{prefix}-0`, `{prefix}-1`, ... that live on `shard` of `count`.
pub fn keys_on_shard(prefix: &str, shard: u32, count: u32, n: usize) -> Vec<String> {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .filter(|k| shard_for_key(k, count) == shard)
        .take(n)
        .collect()
}

/// The shard an order id (`ord-<shard>-<ulid>`) names.
pub fn shard_of_order(id: &str) -> u32 {
    id.split('-')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no shard in order id `{id}`"))
}
