//! Prometheus HTTP service discovery (`http_sd_configs`) from the catalog: every
//! registered instance as one target group, so Prometheus finds every instance by
//! itself and nobody writes targets by hand (`GET /v1/prometheus/targets`).
//!
//! A group is `{"targets": ["host:port"], "labels": {...}}`. Its labels:
//!
//! - `__scheme__` (`https` with TLS, as registered) and `__metrics_path__` (`/metrics`),
//!   so a scrape job needs no relabelling to reach `/metrics`;
//! - `role`, `instance_id`, `version`, and `shard` for a sharded role: kept on every
//!   series scraped. Prometheus' own `instance` label stays `host:port`; no metric of svc
//!   has a label of that name (see the platform's `metrics.rs`);
//! - `__meta_svc_<key>` for every key of the registration's metadata (any character
//!   outside `[a-zA-Z0-9_]` as `_`), for relabel rules to keep; dropped otherwise.
//!
//! The registries themselves do not register; scrape them as static targets (they are
//! the `registries:` of the configuration). See the README, "Prometheus".

use std::collections::BTreeMap;

use super::lease_table::{Lease, LeaseTable};

/// One target group of the http_sd answer.
#[derive(Debug, serde::Serialize)]
struct TargetGroup<'a> {
    targets: [&'a str; 1],
    labels: BTreeMap<String, &'a str>,
}

/// The whole http_sd answer: a JSON array with one group per registered instance, in
/// the table's order (role, then instance id).
pub fn targets_json(table: &LeaseTable) -> Vec<u8> {
    let groups: Vec<TargetGroup> = table
        .iter()
        .filter_map(|(role, lease)| group(role, lease))
        .collect();
    serde_json::to_vec(&groups).expect("target groups serialize")
}

/// The group of one instance; `None` for an address without `scheme://host:port`
/// (admission refuses those, so none is expected).
fn group<'a>(role: &'a str, lease: &'a Lease) -> Option<TargetGroup<'a>> {
    let member = &lease.member;
    let (scheme, rest) = member.address.split_once("://")?;
    let host_port = rest.split('/').next().filter(|h| !h.is_empty())?;
    let mut labels = BTreeMap::new();
    labels.insert("__scheme__".to_string(), scheme);
    labels.insert("__metrics_path__".to_string(), "/metrics");
    labels.insert("role".to_string(), role);
    labels.insert("instance_id".to_string(), &*member.instance_id);
    labels.insert("version".to_string(), &*member.version);
    for (key, value) in member.metadata.iter() {
        if &**key == "shard" {
            labels.insert("shard".to_string(), value);
        }
        labels.insert(format!("__meta_svc_{}", label_name_part(key)), value);
    }
    Some(TargetGroup {
        targets: [host_port],
        labels,
    })
}

/// `key` with every character a Prometheus label name may not hold as `_`.
fn label_name_part(key: &str) -> String {
    key.chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
        .collect()
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use serde_json::{json, Value};
    use svc_platform::registry_api::Registration;

    use super::*;

    #[test]
    fn every_instance_is_a_target_with_its_labels() {
        let mut t = LeaseTable::new(Duration::from_secs(3));
        let now = Instant::now();
        for (role, id, address, metadata) in [
            (
                "orders",
                "ord-1",
                "https://10.0.0.5:7710",
                vec![("shard", "1")],
            ),
            (
                "gateway",
                "gw-0",
                "https://vm1.example:7781/",
                vec![("public_address", "http://vm1.example:8080")],
            ),
        ] {
            let reg = Registration {
                role: role.into(),
                instance_id: id.into(),
                address: address.into(),
                version: "1.2.3".into(),
                metadata: metadata
                    .into_iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
            };
            t.register(reg, now, 42).unwrap();
        }
        let answer: Value = serde_json::from_slice(&targets_json(&t)).unwrap();
        assert_eq!(
            answer,
            json!([
                {"targets": ["vm1.example:7781"], "labels": {
                    "__scheme__": "https", "__metrics_path__": "/metrics",
                    "role": "gateway", "instance_id": "gw-0", "version": "1.2.3",
                    "__meta_svc_public_address": "http://vm1.example:8080"}},
                {"targets": ["10.0.0.5:7710"], "labels": {
                    "__scheme__": "https", "__metrics_path__": "/metrics",
                    "role": "orders", "instance_id": "ord-1", "version": "1.2.3",
                    "shard": "1", "__meta_svc_shard": "1"}},
            ])
        );
    }

    #[test]
    fn an_empty_catalog_is_an_empty_list() {
        let t = LeaseTable::new(Duration::from_secs(3));
        assert_eq!(targets_json(&t), b"[]");
    }

    #[test]
    fn metadata_keys_become_valid_label_names() {
        assert_eq!(label_name_part("zone.name-1"), "zone_name_1");
    }
}
