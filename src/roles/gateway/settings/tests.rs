//! Unit tests of the `gateway:` section, parsed as part of a whole config file.
use super::*;
use crate::config::Config;

const HASH_A: &str = "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08";
const HASH_B: &str = "60303ae22b998861bce3b28f33eec1be758a213c86c93c076dbe9f558c11c752";

fn entry(name: &str, hash: &str, scopes: &str) -> String {
    format!("    - {{ name: {name}, sha256: {hash}, scopes: [{scopes}] }}\n")
}

fn with_keys(entries: &str) -> String {
    format!("gateway:\n  api_keys:\n{entries}")
}

#[test]
fn defaults_have_no_keys_and_pass() {
    let c = Config::parse("", "f").unwrap();
    assert!(c.gateway.api_keys.is_empty());
    assert_eq!(
        c.gateway.rate_limit,
        RateLimitSettings {
            per_second: 20.0,
            burst: 40
        }
    );
    c.validate("f").unwrap();
}

#[test]
fn a_valid_key_list_passes() {
    let yaml = with_keys(
        &(entry("shop", HASH_A, "orders:read, orders:write")
            + &entry("admin", HASH_B, "products:write")),
    );
    let c = Config::parse(&yaml, "f").unwrap();
    c.validate("f").unwrap();
    assert_eq!(
        c.gateway.api_keys[0].scopes,
        vec![Scope::OrdersRead, Scope::OrdersWrite]
    );
}

#[test]
fn a_bad_hash_names_the_entry() {
    for bad in ["abc", &"g".repeat(64), &format!("{HASH_A}0")] {
        let c = Config::parse(&with_keys(&entry("shop", bad, "orders:read")), "f").unwrap();
        let e = c.validate("f").unwrap_err();
        assert_eq!(e.key, "gateway.api_keys[0].sha256", "{bad}");
        assert!(!e.to_string().contains(bad), "no hash in errors: {e}");
    }
}

#[test]
fn an_unknown_scope_names_the_entry() {
    let e = Config::parse(&with_keys(&entry("shop", HASH_A, "orders:delete")), "f").unwrap_err();
    assert!(e.key.starts_with("gateway.api_keys[0].scopes"), "{e}");
    assert!(
        e.reason.contains("orders:write"),
        "lists the valid scopes: {e}"
    );
    assert_eq!(Scope::parse("orders:write"), Ok(Scope::OrdersWrite));
    assert!(Scope::parse("orders")
        .unwrap_err()
        .contains("products:read"));
}

#[test]
fn duplicate_names_and_hashes_are_errors() {
    let c = Config::parse(
        &with_keys(&(entry("shop", HASH_A, "orders:read") + &entry("shop", HASH_B, "orders:read"))),
        "f",
    )
    .unwrap();
    let e = c.validate("f").unwrap_err();
    assert_eq!(e.key, "gateway.api_keys[1].name");
    assert!(e.reason.contains("gateway.api_keys[0]"), "{e}");
    let upper = HASH_A.to_ascii_uppercase();
    let c = Config::parse(
        &with_keys(&(entry("a", HASH_A, "orders:read") + &entry("b", &upper, "orders:read"))),
        "f",
    )
    .unwrap();
    assert_eq!(
        c.validate("f").unwrap_err().key,
        "gateway.api_keys[1].sha256"
    );
}

#[test]
fn limits_name_their_keys() {
    for (yaml, key) in [
        (
            "gateway:\n  rate_limit: { per_second: 0 }\n",
            "gateway.rate_limit.per_second",
        ),
        (
            "gateway:\n  rate_limit: { burst: 0 }\n",
            "gateway.rate_limit.burst",
        ),
        (
            "gateway:\n  max_header_bytes: 10\n",
            "gateway.max_header_bytes",
        ),
        (
            "gateway:\n  request_timeout: 0s\n",
            "gateway.request_timeout",
        ),
        (
            "gateway:\n  header_read_timeout: 0s\n",
            "gateway.header_read_timeout",
        ),
        (
            &with_keys(&format!(
                "    - {{ name: a, sha256: {HASH_A}, scopes: [orders:read], burst: 0 }}\n"
            )),
            "gateway.api_keys[0].burst",
        ),
        (
            &with_keys(&entry("a", HASH_A, "")),
            "gateway.api_keys[0].scopes",
        ),
        (
            &with_keys(&entry("a/b", HASH_A, "orders:read")),
            "gateway.api_keys[0].name",
        ),
    ] {
        // Single values fail the parse, the rest the check.
        let e = Config::parse(yaml, "f")
            .and_then(|c| c.validate("f"))
            .unwrap_err();
        assert_eq!(e.key, key, "{yaml}");
    }
}

#[test]
fn the_keys_file_is_read_and_checked_with_the_inline_keys() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("keys.yaml");
    let yaml = |file: &Path| {
        format!(
            "gateway:\n  api_keys_file: {}\n  api_keys:\n{}",
            file.display(),
            entry("shop", HASH_A, "orders:read")
        )
    };
    std::fs::write(
        &file,
        format!("- {{ name: ops, sha256: {HASH_B}, scopes: [products:write] }}\n"),
    )
    .unwrap();
    let c = Config::parse(&yaml(&file), "svc.yaml").unwrap();
    c.validate("svc.yaml").unwrap();
    let all = c.gateway.all_keys("svc.yaml").unwrap();
    let names: Vec<&str> = all.iter().map(|k| k.name.as_str()).collect();
    assert_eq!(names, ["shop", "ops"]);

    std::fs::write(
        &file,
        format!("- {{ name: shop, sha256: {HASH_B}, scopes: [orders:read] }}\n"),
    )
    .unwrap();
    let e = c.gateway.all_keys("svc.yaml").unwrap_err();
    assert_eq!(
        (e.file.as_str(), e.key.as_str()),
        (file.to_str().unwrap(), "[0].name")
    );
    assert!(e.reason.contains("gateway.api_keys[0]"), "{e}");

    std::fs::write(
        &file,
        format!("- {{ name: ops, sha256: {HASH_B}, scopes: [root] }}\n"),
    )
    .unwrap();
    let e = c.gateway.all_keys("svc.yaml").unwrap_err();
    assert_eq!(e.file, file.display().to_string());
    assert!(e.key.starts_with("[0].scopes"), "{e}");

    let missing = dir.path().join("nope.yaml");
    let c = Config::parse(&yaml(&missing), "svc.yaml").unwrap();
    let e = c.gateway.all_keys("svc.yaml").unwrap_err();
    assert_eq!(e.file, missing.display().to_string());
}
