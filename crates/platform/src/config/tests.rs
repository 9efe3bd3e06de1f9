//! Unit tests of the platform's part of the config.
use super::values::NOT_POSITIVE;
use super::*;

#[test]
fn empty_text_is_all_defaults() {
    let c = PlatformConfig::parse("", "f.yaml").unwrap();
    assert_eq!(c.discovery.watch_wait, Duration::from_secs(30));
    c.validate("f.yaml").unwrap();
}

#[test]
fn keys_are_the_serialized_fields() {
    let value = serde_json::to_value(PlatformConfig::default()).unwrap();
    let fields: Vec<&str> = value
        .as_object()
        .unwrap()
        .keys()
        .map(|k| k.as_str())
        .collect();
    let mut keys = PlatformConfig::KEYS.to_vec();
    keys.sort_unstable();
    assert_eq!(fields, keys, "PlatformConfig::KEYS lists every field");
}

#[test]
fn unknown_key_names_the_key() {
    let e = PlatformConfig::parse("http:\n  max_body: 3\n", "svc.yaml").unwrap_err();
    assert!(e.reason.contains("unknown field `max_body`"), "{e}");
    assert!(e.key.starts_with("http"), "{e}");
}

#[test]
fn registry_urls_are_checked() {
    let c = PlatformConfig::parse("registries: [\"ftp://x\"]\n", "f").unwrap();
    assert_eq!(c.validate("f").unwrap_err().key, "registries[0]");
}

#[test]
fn otlp_is_off_by_default_and_its_endpoint_is_checked() {
    let c = PlatformConfig::parse("", "f").unwrap();
    assert!(!c.otlp.enabled);
    assert_eq!(c.otlp.traces_url(), "http://127.0.0.1:4318/v1/traces");
    let c = PlatformConfig::parse(
        "otlp:\n  enabled: true\n  endpoint: https://otel.example/prefix/\n",
        "f",
    )
    .unwrap();
    c.validate("f").unwrap();
    assert_eq!(c.otlp.traces_url(), "https://otel.example/prefix/v1/traces");
    for bad in [
        "otlp:\n  endpoint: 127.0.0.1:4318\n",
        "otlp:\n  endpoint: ftp://collector\n",
        "otlp:\n  endpoint: http://collector:4318/v1/traces\n",
        "otlp:\n  endpoint: http://collector:4318?x=1\n",
    ] {
        let c = PlatformConfig::parse(bad, "f").unwrap();
        assert_eq!(c.validate("f").unwrap_err().key, "otlp.endpoint", "{bad}");
    }
    let e = PlatformConfig::parse("otlp:\n  export_timeout: 0s\n", "f").unwrap_err();
    assert_eq!(e.key, "otlp.export_timeout");
    assert!(e.reason.contains(NOT_POSITIVE), "{e}");
    let e = PlatformConfig::parse("otlp:\n  enable: true\n", "f").unwrap_err();
    assert!(e.key.starts_with("otlp"), "{e}");
}

#[test]
fn overrides_win() {
    let c = PlatformConfig::parse("instance_id: a\n", "f").unwrap();
    let c = c
        .apply(Overrides {
            instance_id: Some("b".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(c.instance_id.as_deref(), Some("b"));
}

#[test]
fn shard_counts_are_checked_and_merged_with_flags() {
    let c = PlatformConfig::parse("shard: 1\nshards:\n  orders: 2\n  inventory: 3\n", "f").unwrap();
    c.validate("f").unwrap();
    assert_eq!(
        (c.shards.count("orders"), c.shards.count("payments")),
        (2, 1)
    );
    let flags = crate::shards::ShardCounts::parse_list(&["orders=4".into()]).ok();
    let c = c
        .apply(Overrides {
            shard: Some(3),
            shards: flags,
            ..Default::default()
        })
        .unwrap();
    assert_eq!((c.shard, c.shards.count("orders")), (3, 4));
    assert_eq!(
        c.shards.count("inventory"),
        3,
        "the file's other counts stay"
    );
    let zero = PlatformConfig::parse("shards:\n  orders: 0\n", "f").unwrap();
    assert_eq!(zero.validate("f").unwrap_err().key, "shards.orders");
}

fn manifest(name: &str, stateful: bool) -> Manifest {
    Manifest {
        name: name.into(),
        description: String::new(),
        port: 0,
        stateful,
        registers: true,
        calls: Vec::new(),
        publishes: Vec::new(),
        consumes: Vec::new(),
        endpoints: Default::default(),
        public: false,
    }
}

#[test]
fn a_shard_must_be_one_of_its_roles_shards() {
    let (orders, gateway) = (manifest("orders", true), manifest("gateway", false));
    let catalog = RoleCatalog::new(vec![orders.clone(), gateway.clone()]).unwrap();
    let c = PlatformConfig::parse("shard: 2\nshards:\n  orders: 2\n", "f").unwrap();
    let e = c.check_for_role("f", &orders, &catalog).unwrap_err();
    assert_eq!(e.key, "shard");
    assert!(e.reason.contains("expected 0 to 1"), "{e}");
    // A stateless role ignores its shard.
    c.check_for_role("f", &gateway, &catalog).unwrap();
    let c = PlatformConfig::parse("shards:\n  gateway: 2\n", "f").unwrap();
    let e = c.check_for_role("f", &orders, &catalog).unwrap_err();
    assert_eq!(e.key, "shards.gateway");
}
