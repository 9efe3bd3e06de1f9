//! Parsing `--replicas role=count,...` against the role catalog.
//!
//! Guarantees: every named role exists, every count is from 1 to [`MAX_REPLICAS`], no
//! role is named twice, and the registry (the role that does not register) runs exactly
//! once: every other child is pointed at that one registry, so a second would sit idle.
//! Roles not named keep one instance.

use std::collections::BTreeMap;

use svc_platform::manifest::RoleCatalog;

/// A guard against a typo such as `orders=100` starting a hundred processes.
pub const MAX_REPLICAS: usize = 16;

#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum ReplicasError {
    #[error("--replicas `{item}`: expected ROLE=COUNT, e.g. gateway=2")]
    Malformed { item: String },
    #[error("--replicas `{item}`: unknown role `{role}`; valid roles: {valid}")]
    UnknownRole {
        item: String,
        role: String,
        valid: String,
    },
    #[error("--replicas `{item}`: COUNT must be a whole number from 1 to {MAX_REPLICAS}")]
    BadCount { item: String },
    #[error("--replicas: role `{role}` is given twice")]
    Duplicate { role: String },
    #[error("--replicas `{item}`: `svc dev` runs exactly one {role} (every other instance registers with it)")]
    SingleRegistry { item: String, role: String },
}

/// Instances per role.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Replicas {
    counts: BTreeMap<String, usize>,
}

impl Replicas {
    /// How many instances of `role` to run: the given count, else one.
    pub fn count(&self, role: &str) -> usize {
        self.counts.get(role).copied().unwrap_or(1)
    }
}

/// Parses the `--replicas` values (clap has already split them at commas).
pub fn parse(items: &[String], catalog: &RoleCatalog) -> Result<Replicas, ReplicasError> {
    let mut counts = BTreeMap::new();
    // Empty items come from a stray comma (`gateway=2,`); they ask for nothing.
    for item in items.iter().map(|i| i.trim()).filter(|i| !i.is_empty()) {
        let malformed = || ReplicasError::Malformed {
            item: item.to_string(),
        };
        let (role, count) = item.split_once('=').ok_or_else(malformed)?;
        let (role, count) = (role.trim(), count.trim());
        if role.is_empty() {
            return Err(malformed());
        }
        let manifest = catalog
            .get(role)
            .ok_or_else(|| ReplicasError::UnknownRole {
                item: item.to_string(),
                role: role.to_string(),
                valid: catalog.names().join(", "),
            })?;
        let count: usize = count
            .parse()
            .ok()
            .filter(|n| (1..=MAX_REPLICAS).contains(n))
            .ok_or_else(|| ReplicasError::BadCount {
                item: item.to_string(),
            })?;
        if manifest.is_registry() && count != 1 {
            return Err(ReplicasError::SingleRegistry {
                item: item.to_string(),
                role: role.to_string(),
            });
        }
        if counts.insert(role.to_string(), count).is_some() {
            return Err(ReplicasError::Duplicate {
                role: role.to_string(),
            });
        }
    }
    Ok(Replicas { counts })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::roles;

    fn parse_str(items: &[&str]) -> Result<Replicas, ReplicasError> {
        let items: Vec<String> = items.iter().map(|s| s.to_string()).collect();
        parse(&items, &roles::built_in())
    }

    #[test]
    fn none_given_means_one_of_each() {
        let replicas = parse_str(&[]).unwrap();
        for name in roles::built_in().names() {
            assert_eq!(replicas.count(name), 1);
        }
    }

    #[test]
    fn named_roles_get_their_count_and_others_keep_one() {
        let replicas = parse_str(&["gateway=2", " orders = 3 ", ""]).unwrap();
        assert_eq!(replicas.count("gateway"), 2);
        assert_eq!(replicas.count("orders"), 3);
        assert_eq!(replicas.count("payments"), 1);
    }

    #[test]
    fn registry_may_be_named_with_one_only() {
        assert_eq!(parse_str(&["registry=1"]).unwrap().count("registry"), 1);
        assert!(matches!(
            parse_str(&["registry=2"]),
            Err(ReplicasError::SingleRegistry { .. })
        ));
    }

    #[test]
    fn unknown_role_lists_the_valid_ones() {
        let err = parse_str(&["billing=2"]).unwrap_err();
        assert!(matches!(err, ReplicasError::UnknownRole { .. }));
        assert!(err.to_string().contains("orders"), "{err}");
    }

    #[test]
    fn bad_counts_are_refused() {
        for item in [
            "orders=0",
            "orders=-1",
            "orders=two",
            "orders=",
            "orders=17",
        ] {
            assert!(
                matches!(parse_str(&[item]), Err(ReplicasError::BadCount { .. })),
                "{item}"
            );
        }
        assert!(parse_str(&["orders=16"]).is_ok());
    }

    #[test]
    fn malformed_items_are_refused() {
        for item in ["orders", "=2", "orders:2"] {
            assert!(
                matches!(parse_str(&[item]), Err(ReplicasError::Malformed { .. })),
                "{item}"
            );
        }
    }

    #[test]
    fn a_role_named_twice_is_refused() {
        assert_eq!(
            parse_str(&["orders=2", "orders=1"]),
            Err(ReplicasError::Duplicate {
                role: "orders".to_string()
            })
        );
    }
}
