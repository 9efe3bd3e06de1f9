//! Who may register what: the caller's certificate against the registration, and who
//! owns an instance id. (The shape of a registration is `lease_table::validate`'s.)
//!
//! - A certificate acts only for the role it names, at a host it names (where only the
//!   holder of that certificate can serve): it registers, renews and deregisters its
//!   own role's instances on its own hosts, and no other.
//! - With TLS on, an address must be `https`: the registry would otherwise hand out an
//!   address that callers reach in clear text, card numbers included, and whose answers
//!   the gateway relays to users. (Clients refuse to dial one too: `tls::client_side`.)
//! - An instance id belongs to the host that registered it until it deregisters or its
//!   lease expires. A registration of the same id from a certificate that does not name
//!   that host is refused (409), so another machine's certificate cannot move an
//!   instance, and the shard it holds, to itself. Without certificates (`tls.insecure`)
//!   the host is the address's.
//!
//! Every refusal is a [`Refusal`], with the status it is answered with.

use std::time::Instant;

use actix_web::http::StatusCode;
use svc_platform::problem::Problem;
use svc_platform::registry_api::Registration;
use svc_platform::tls::{identity, PeerIdentity};

use super::lease_table::{LeaseTable, ShardHeld};

/// Why the registry refused a registration, renewal or deregistration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    #[error("a certificate for role `{caller}` cannot {action} role `{role}`")]
    OtherRole {
        caller: String,
        role: String,
        action: &'static str,
    },
    #[error("a certificate for hosts [{}] cannot {action} an instance at `{host}`", .hosts.join(", "))]
    OtherHost {
        hosts: Vec<String>,
        host: String,
        action: &'static str,
    },
    #[error(
        "address `{address}`: expected an https:// address; with TLS on, a plain-HTTP \
         address would be called in clear text"
    )]
    PlainHttp { address: String },
    #[error(
        "instance id `{id}` of {role} is registered from host `{owner}` ({address}) until \
         it deregisters or its lease expires; a certificate for hosts [{}] cannot register it",
        .caller_hosts.join(", ")
    )]
    IdOfAnotherHost {
        role: String,
        id: String,
        owner: String,
        address: String,
        caller_hosts: Vec<String>,
    },
    #[error(transparent)]
    ShardHeld(#[from] ShardHeld),
}

impl Refusal {
    pub fn status(&self) -> StatusCode {
        match self {
            Refusal::OtherRole { .. } | Refusal::OtherHost { .. } => StatusCode::FORBIDDEN,
            Refusal::PlainHttp { .. } => StatusCode::BAD_REQUEST,
            Refusal::IdOfAnotherHost { .. } | Refusal::ShardHeld(_) => StatusCode::CONFLICT,
        }
    }

    /// Logs the refusal of what `caller` (`None` without TLS) asked about instance
    /// `instance_id`, with what it collided with.
    pub fn log(&self, caller: Option<&PeerIdentity>, instance_id: &str) {
        let caller_role = caller.and_then(|p| p.role.as_deref()).unwrap_or("-");
        let caller_hosts = caller.map(|p| p.hosts.join(",")).unwrap_or_default();
        match self {
            Refusal::IdOfAnotherHost {
                role,
                owner,
                address,
                ..
            } => tracing::warn!(
                instance_role = %role,
                instance_id,
                registered_host = %owner,
                registered_address = %address,
                caller_role,
                caller_hosts,
                "refused: instance id registered from another host"
            ),
            Refusal::ShardHeld(held) => tracing::warn!(
                instance_role = %held.role,
                shard = held.shard,
                holder = %held.holder,
                instance_id,
                caller_role,
                caller_hosts,
                "refused a second holder of a shard"
            ),
            other => tracing::warn!(instance_id, caller_role, caller_hosts, "refused: {other}"),
        }
    }
}

impl From<Refusal> for Problem {
    fn from(refusal: Refusal) -> Problem {
        Problem::new(refusal.status(), refusal.to_string())
    }
}

/// The host of a base URL, if it has one.
fn host_of(address: &str) -> Option<String> {
    reqwest::Url::parse(address)
        .ok()?
        .host_str()
        .map(str::to_string)
}

/// `caller` may `action` an instance of `role` at `address` (`None`: not registered):
/// its certificate names that role and that address's host. No caller: `tls.insecure`.
pub fn acting_for(
    caller: Option<&PeerIdentity>,
    role: &str,
    address: Option<&str>,
    action: &'static str,
) -> Result<(), Refusal> {
    let Some(peer) = caller else {
        return Ok(());
    };
    let caller_role = peer.role.as_deref().unwrap_or("-");
    if caller_role != role {
        return Err(Refusal::OtherRole {
            caller: caller_role.to_string(),
            role: role.to_string(),
            action,
        });
    }
    match address.and_then(host_of) {
        Some(host) if !identity::names_host(&peer.hosts, &host) => Err(Refusal::OtherHost {
            hosts: peer.hosts.clone(),
            host,
            action,
        }),
        _ => Ok(()),
    }
}

/// With TLS on (`tls_on`), only an `https` address may be registered.
pub fn secure_address(address: &str, tls_on: bool) -> Result<(), Refusal> {
    let https = reqwest::Url::parse(address).is_ok_and(|u| u.scheme() == "https");
    if tls_on && !https {
        return Err(Refusal::PlainHttp {
            address: address.to_string(),
        });
    }
    Ok(())
}

/// `reg` comes from the host that owns its instance id, or the id is free: no live
/// lease (at `now`), or one registered from a host `caller`'s certificate names (without
/// TLS: the same host as `reg`'s address).
pub fn owner_of_id(
    table: &LeaseTable,
    reg: &Registration,
    caller: Option<&PeerIdentity>,
    now: Instant,
) -> Result<(), Refusal> {
    let Some(lease) = table.lease(&reg.role, &reg.instance_id) else {
        return Ok(());
    };
    let Some(owner) = host_of(&lease.member.address) else {
        return Ok(());
    };
    let same_host = match caller {
        Some(peer) => identity::names_host(&peer.hosts, &owner),
        None => host_of(&reg.address).is_some_and(|h| h == owner),
    };
    if same_host || lease.expires <= now {
        return Ok(());
    }
    Err(Refusal::IdOfAnotherHost {
        role: reg.role.clone(),
        id: reg.instance_id.clone(),
        owner,
        address: lease.member.address.to_string(),
        caller_hosts: caller.map(|p| p.hosts.clone()).unwrap_or_default(),
    })
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const TTL: Duration = Duration::from_secs(1);

    fn reg(id: &str, address: &str) -> Registration {
        Registration {
            role: "orders".into(),
            instance_id: id.into(),
            address: address.into(),
            version: "1".into(),
            metadata: Default::default(),
        }
    }

    fn peer(role: &str, hosts: &[&str]) -> PeerIdentity {
        PeerIdentity {
            role: Some(role.into()),
            hosts: hosts.iter().map(|h| h.to_string()).collect(),
        }
    }

    #[test]
    fn a_certificate_acts_for_its_role_on_its_hosts() {
        let vm1 = peer("orders", &["vm1", "10.0.0.1"]);
        let at = |a| Some(a);
        assert_eq!(
            acting_for(Some(&vm1), "orders", at("https://vm1:1"), "x"),
            Ok(())
        );
        assert_eq!(
            acting_for(Some(&vm1), "orders", at("https://10.0.0.1:1"), "x"),
            Ok(())
        );
        let e = acting_for(Some(&vm1), "payments", at("https://vm1:1"), "register as");
        assert_eq!(e.unwrap_err().status(), StatusCode::FORBIDDEN);
        let e = acting_for(Some(&vm1), "orders", at("https://vm2:1"), "register").unwrap_err();
        assert_eq!(
            e.to_string(),
            "a certificate for hosts [vm1, 10.0.0.1] cannot register an instance at `vm2`"
        );
        // Without TLS there is no identity to check.
        assert_eq!(
            acting_for(None, "payments", at("https://vm2:1"), "x"),
            Ok(())
        );
    }

    #[test]
    fn with_tls_on_only_https_addresses_are_registered() {
        assert_eq!(secure_address("https://vm1:1", true), Ok(()));
        let e = secure_address("http://vm1:1", true).unwrap_err();
        assert_eq!(e.status(), StatusCode::BAD_REQUEST);
        assert!(e.to_string().contains("https://"), "{e}");
        assert_eq!(secure_address("http://vm1:1", false), Ok(()));
    }

    #[test]
    fn an_instance_id_belongs_to_its_host_while_its_lease_lives() {
        let mut table = LeaseTable::new(TTL);
        let now = Instant::now();
        table
            .register(reg("ord-0", "https://vm1:1"), now, 0)
            .unwrap();
        let vm1 = peer("orders", &["vm1"]);
        let vm2 = peer("orders", &["vm2"]);
        // Its own host may move it (a new port, another of its names).
        assert_eq!(
            owner_of_id(&table, &reg("ord-0", "https://vm1:2"), Some(&vm1), now),
            Ok(())
        );
        // Another host may not, even to an address its certificate names.
        let takeover = reg("ord-0", "https://vm2:1");
        let e = owner_of_id(&table, &takeover, Some(&vm2), now).unwrap_err();
        assert_eq!(e.status(), StatusCode::CONFLICT);
        assert!(e.to_string().contains("`vm1`"), "{e}");
        assert!(e.to_string().contains("[vm2]"), "{e}");
        // Until the lease expires (or the instance deregisters).
        assert_eq!(
            owner_of_id(&table, &takeover, Some(&vm2), now + TTL),
            Ok(())
        );
        table.deregister("orders", "ord-0");
        assert_eq!(owner_of_id(&table, &takeover, Some(&vm2), now), Ok(()));
        // Other ids are free.
        assert_eq!(
            owner_of_id(&table, &reg("ord-1", "https://vm2:1"), Some(&vm2), now),
            Ok(())
        );
    }

    #[test]
    fn without_tls_the_host_is_the_address_host() {
        let mut table = LeaseTable::new(TTL);
        let now = Instant::now();
        table
            .register(reg("ord-0", "http://vm1:1"), now, 0)
            .unwrap();
        assert_eq!(
            owner_of_id(&table, &reg("ord-0", "http://vm1:2"), None, now),
            Ok(())
        );
        assert!(owner_of_id(&table, &reg("ord-0", "http://vm2:1"), None, now).is_err());
    }
}
