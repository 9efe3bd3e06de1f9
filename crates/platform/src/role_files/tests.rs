//! Loading and checking roles from files: each refusal names the file and the key.

use std::collections::BTreeMap;
use std::path::Path;

use super::*;

fn built_in() -> RoleCatalog {
    let parse = |text: &str| Manifest::parse(text, "built in").unwrap();
    RoleCatalog::new(vec![
        parse(
            "name: registry\ndescription: d\nport: 7700\nstateful: true\nregisters: false\n\
             calls: []\npublishes: []\nconsumes: []\nendpoints:\n  \
             POST /v1/instances: [gateway, inventory, orders]\n  GET /ui: [operator]\n",
        ),
        parse(
            "name: gateway\ndescription: d\nport: 8080\nstateful: false\nregisters: true\n\
             calls: [inventory]\npublishes: []\nconsumes: []\n",
        ),
        parse(
            "name: inventory\ndescription: d\nport: 0\nstateful: true\nregisters: true\n\
             calls: []\npublishes: []\nconsumes: []\nendpoints:\n  \
             GET /v1/products/{sku}: [gateway, operator]\n  POST /v1/products: [gateway]\n",
        ),
        parse(
            "name: orders\ndescription: d\nport: 0\nstateful: true\nregisters: true\n\
             calls: [inventory]\npublishes: [order.confirmed]\nconsumes: []\n",
        ),
    ])
    .unwrap()
}

const LOYALTY: &str = "name: loyalty\ndescription: Points for orders.\nport: 0\n\
    stateful: false\nregisters: true\ncalls: [inventory]\npublishes: []\n\
    consumes: [order.confirmed]\nendpoints:\n  POST /v1/events: [orders]\n  \
    GET /v1/points/{customer}: [gateway, operator]\n";

/// A roles directory holding `files` (`(name, text)`).
fn roles_dir(files: &[(&str, &str)]) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    for (name, text) in files {
        std::fs::write(dir.path().join(name), text).unwrap();
    }
    dir
}

fn settings(dir: &Path, extra: &[(&str, &str, &[&str])]) -> RolesSettings {
    let mut extra_callers: ExtraCallers = BTreeMap::new();
    for (role, endpoint, callers) in extra {
        extra_callers.entry(role.to_string()).or_default().insert(
            endpoint.to_string(),
            callers.iter().map(|c| c.to_string()).collect(),
        );
    }
    RolesSettings {
        dir: Some(dir.to_path_buf()),
        extra_callers,
    }
}

fn load(
    files: &[(&str, &str)],
    extra: &[(&str, &str, &[&str])],
) -> Result<RoleCatalog, ManifestError> {
    let dir = roles_dir(files);
    load_catalog(&built_in(), &settings(dir.path(), extra), "svc.yaml")
}

#[test]
fn a_role_from_a_file_joins_the_built_in_ones_and_only_yaml_files_are_read() {
    let catalog = load(
        &[("loyalty.yaml", LOYALTY), ("README.md", "not a role")],
        &[],
    )
    .unwrap();
    assert_eq!(
        catalog.names(),
        ["registry", "gateway", "inventory", "orders", "loyalty"]
    );
    assert!(
        matches!(catalog.source("loyalty"), Some(RoleSource::File(p)) if p.ends_with("loyalty.yaml"))
    );
    assert_eq!(catalog.source("orders"), Some(&RoleSource::BuiltIn));
    let consumers: Vec<&str> = catalog
        .consumers_of("order.confirmed")
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(consumers, ["loyalty"]);
    // No directory: the built-in roles alone.
    let none = load_catalog(&built_in(), &RolesSettings::default(), "svc.yaml").unwrap();
    assert_eq!(none.names().len(), 4);
}

#[test]
fn a_role_from_a_file_may_call_what_every_registering_role_may_call_at_the_registry() {
    let catalog = load(&[("loyalty.yaml", LOYALTY)], &[]).unwrap();
    let registry: BTreeMap<&str, &[String]> = catalog
        .get("registry")
        .unwrap()
        .endpoint_callers()
        .collect();
    assert_eq!(
        registry["POST /v1/instances"],
        ["gateway", "inventory", "orders", "loyalty"]
    );
    assert_eq!(registry["GET /ui"], ["operator"], "not the operator's page");
    assert!(catalog.is_extra_caller("registry", "POST /v1/instances", "loyalty"));
}

#[test]
fn a_role_that_clashes_with_a_built_in_one_names_the_file_and_key() {
    let text = LOYALTY.replace("name: loyalty", "name: orders");
    let e = load(&[("orders.yaml", &text)], &[]).unwrap_err();
    assert!(e.file.ends_with("orders.yaml"), "{e}");
    assert_eq!(e.key, "name");
    assert!(e.reason.contains("built in"), "{e}");
}

#[test]
fn an_unknown_caller_or_callee_names_the_file_and_key() {
    let text = LOYALTY.replace("[gateway, operator]", "[gateway, billing]");
    let e = load(&[("loyalty.yaml", &text)], &[]).unwrap_err();
    assert!(e.file.ends_with("loyalty.yaml"), "{e}");
    assert_eq!(e.key, "endpoints.GET /v1/points/{customer}");
    assert!(e.reason.contains("unknown caller `billing`"), "{e}");

    let text = LOYALTY.replace("calls: [inventory]", "calls: [billing]");
    let e = load(&[("loyalty.yaml", &text)], &[]).unwrap_err();
    assert!(e.file.ends_with("loyalty.yaml"), "{e}");
    assert_eq!(e.key, "calls");
}

#[test]
fn malformed_yaml_names_the_file_and_key() {
    for (text, key, reason) in [
        (LOYALTY.replace("port: 0", "port: many"), "port", "invalid"),
        (
            LOYALTY.replace("stateful: false", "stateful: false\ncolour: red"),
            "colour",
            "unknown field",
        ),
        (LOYALTY.replace("[orders]\n", "[orders\n"), "endpoints", ""),
        (
            LOYALTY.replace("GET /v1/points", "FETCH /v1/points"),
            "endpoints.FETCH /v1/points/{customer}",
            "METHOD",
        ),
    ] {
        let e = load(&[("loyalty.yaml", &text)], &[]).unwrap_err();
        assert!(e.file.ends_with("loyalty.yaml"), "{e}");
        assert!(e.key.starts_with(key), "{key}: {e}");
        assert!(e.reason.contains(reason), "{e}");
    }
}

#[test]
fn a_role_from_a_file_is_named_like_its_file_and_registers() {
    let e = load(&[("points.yaml", LOYALTY)], &[]).unwrap_err();
    assert_eq!(
        (e.key.as_str(), e.file.ends_with("points.yaml")),
        ("name", true),
        "{e}"
    );
    let text = LOYALTY.replace("registers: true", "registers: false");
    let e = load(&[("loyalty.yaml", &text)], &[]).unwrap_err();
    assert_eq!(e.key, "registers", "{e}");
}

#[test]
fn a_missing_directory_names_the_config_key() {
    let dir = tempfile::tempdir().unwrap();
    let gone = dir.path().join("gone");
    let e = load_catalog(&built_in(), &settings(&gone, &[]), "svc.yaml").unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.key.as_str()),
        ("svc.yaml", "roles.dir"),
        "{e}"
    );
}

#[test]
fn extra_callers_extend_a_built_in_endpoint_for_a_role_from_a_file_only() {
    let products = "GET /v1/products/{sku}";
    let catalog = load(
        &[("loyalty.yaml", LOYALTY)],
        &[("inventory", products, &["loyalty"])],
    )
    .unwrap();
    let inventory = catalog.get("inventory").unwrap();
    let callers: BTreeMap<&str, &[String]> = inventory.endpoint_callers().collect();
    assert_eq!(callers[products], ["gateway", "operator", "loyalty"]);
    assert_eq!(
        callers["POST /v1/products"],
        ["gateway"],
        "nothing else changes"
    );
    assert!(catalog.is_extra_caller("inventory", products, "loyalty"));
    assert!(!catalog.is_extra_caller("inventory", products, "gateway"));

    for (extra, key, reason) in [
        (
            ("inventory", products, &["orders"][..]),
            "roles.extra_callers.inventory.GET /v1/products/{sku}",
            "not a role from a file",
        ),
        (
            ("inventory", products, &["billing"][..]),
            "roles.extra_callers.inventory.GET /v1/products/{sku}",
            "not a role from a file",
        ),
        (
            ("inventory", "DELETE /v1/products", &["loyalty"][..]),
            "roles.extra_callers.inventory.DELETE /v1/products",
            "declares no endpoint",
        ),
        (
            ("billing", products, &["loyalty"][..]),
            "roles.extra_callers.billing",
            "unknown role",
        ),
        (
            ("loyalty", "POST /v1/events", &["loyalty"][..]),
            "roles.extra_callers.loyalty",
            "list its callers in",
        ),
    ] {
        let e = load(&[("loyalty.yaml", LOYALTY)], &[extra]).unwrap_err();
        assert_eq!((e.file.as_str(), e.key.as_str()), ("svc.yaml", key), "{e}");
        assert!(e.reason.contains(reason), "{e}");
    }
}
