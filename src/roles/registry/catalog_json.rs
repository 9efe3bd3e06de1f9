//! The catalog, a role's instances and one instance, written as JSON straight from the
//! [`LeaseTable`] in exactly the shape of the wire types (`Catalog`, `RoleInstances`
//! and `Instance` of `registry_api`), without building those first: one pass over the
//! table, no string copied. One instance's JSON is also the row persisted in redb,
//! which a restart reads back as an `Instance`.

use serde::ser::{Serialize, SerializeStruct, Serializer};

use super::lease_table::{Lease, LeaseTable};

/// One instance, as the wire's `Instance`.
pub struct InstanceJson<'a> {
    pub role: &'a str,
    pub lease: &'a Lease,
}

impl Serialize for InstanceJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let member = &self.lease.member;
        let mut out = s.serialize_struct("Instance", 7)?;
        out.serialize_field("role", self.role)?;
        out.serialize_field("instance_id", &*member.instance_id)?;
        out.serialize_field("address", &*member.address)?;
        out.serialize_field("version", &*member.version)?;
        out.serialize_field("metadata", &MetadataJson(&member.metadata))?;
        out.serialize_field("registered_at_ms", &member.registered_at_ms)?;
        out.serialize_field("renewed_at_ms", &self.lease.renewed_at_ms)?;
        out.end()
    }
}

/// Sorted `(key, value)` pairs as a JSON object.
struct MetadataJson<'a>(&'a [(Box<str>, Box<str>)]);

impl Serialize for MetadataJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(k, v)| (&**k, &**v)))
    }
}

/// The instances of one role, as a JSON array.
struct InstancesJson<'a> {
    table: &'a LeaseTable,
    role: &'a str,
}

impl Serialize for InstancesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.table.role_leases(self.role).map(|lease| InstanceJson {
            role: self.role,
            lease,
        }))
    }
}

/// Every instance by role (roles without any left out), as the wire's `Catalog`.
pub struct CatalogJson<'a>(pub &'a LeaseTable);

impl Serialize for CatalogJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_struct("Catalog", 2)?;
        out.serialize_field("index", &self.0.index())?;
        out.serialize_field("roles", &RolesJson(self.0))?;
        out.end()
    }
}

/// The catalog's `roles` object: role name to its instances.
struct RolesJson<'a>(&'a LeaseTable);

impl Serialize for RolesJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let table = self.0;
        s.collect_map(
            table
                .roles
                .iter()
                .filter(|(_, leases)| !leases.leases.is_empty())
                .map(|(role, _)| (&**role, InstancesJson { table, role })),
        )
    }
}

/// The instances of one role, as the wire's `RoleInstances`.
pub struct RoleJson<'a> {
    pub table: &'a LeaseTable,
    pub role: &'a str,
}

impl Serialize for RoleJson<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut out = s.serialize_struct("RoleInstances", 3)?;
        out.serialize_field("index", &self.table.index())?;
        out.serialize_field("role", self.role)?;
        out.serialize_field(
            "instances",
            &InstancesJson {
                table: self.table,
                role: self.role,
            },
        )?;
        out.end()
    }
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use svc_platform::registry_api::{Catalog, Instance, Registration, RoleInstances};

    use super::*;

    fn table() -> LeaseTable {
        let mut t = LeaseTable::new(Duration::from_secs(3));
        let now = Instant::now();
        for (role, id, shard) in [
            ("orders", "o-1", "1"),
            ("orders", "o-0", "0"),
            ("gateway", "g", "0"),
        ] {
            let reg = Registration {
                role: role.into(),
                instance_id: id.into(),
                address: format!("https://{id}:1"),
                version: "1.2.3".into(),
                metadata: [
                    ("shard".to_string(), shard.to_string()),
                    ("z".into(), "last".into()),
                ]
                .into(),
            };
            t.register(reg, now, 42).unwrap();
        }
        t.deregister("gateway", "g");
        t
    }

    #[test]
    fn the_catalog_is_the_wire_catalog_and_leaves_out_empty_roles() {
        let t = table();
        let json = serde_json::to_value(CatalogJson(&t)).unwrap();
        let catalog: Catalog = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(catalog.index, 4);
        assert_eq!(
            catalog.roles.keys().collect::<Vec<_>>(),
            ["orders"],
            "{json}"
        );
        let ids: Vec<&str> = catalog
            .instances("orders")
            .iter()
            .map(|i| i.instance_id.as_str())
            .collect();
        assert_eq!(ids, ["o-0", "o-1"]);
        // Field for field what serde writes for the wire type itself.
        assert_eq!(json, serde_json::to_value(&catalog).unwrap());
    }

    #[test]
    fn one_instance_is_the_wire_instance() {
        let t = table();
        let (role, lease) = t.iter().next().unwrap();
        let json = serde_json::to_value(InstanceJson { role, lease }).unwrap();
        let instance: Instance = serde_json::from_value(json.clone()).unwrap();
        assert_eq!(instance, lease.member.to_instance(role, 42));
        assert_eq!(json, serde_json::to_value(&instance).unwrap());
        assert_eq!(json["metadata"]["z"], "last");
    }

    #[test]
    fn a_role_listing_is_the_wire_listing_also_when_empty() {
        let t = table();
        let orders: RoleInstances = serde_json::from_value(
            serde_json::to_value(RoleJson {
                table: &t,
                role: "orders",
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(orders.instances.len(), 2);
        let none: RoleInstances = serde_json::from_value(
            serde_json::to_value(RoleJson {
                table: &t,
                role: "gateway",
            })
            .unwrap(),
        )
        .unwrap();
        assert_eq!(
            (none.index, none.role.as_str(), none.instances.len()),
            (4, "gateway", 0)
        );
    }
}
