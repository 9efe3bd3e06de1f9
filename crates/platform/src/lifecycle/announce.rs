//! Steps 4 and 5 of an instance's life, once it serves: register at every registry
//! (so no peer is sent to an address that refuses), then tell the world it is ready: one
//! JSON line on stdout (what `svc dev` and the tests wait for) and `READY=1` to systemd.
//!
//! Also the instance id announced when none is configured ([`default_instance_id`]).
//! What is announced is built by plain functions ([`registration`], [`ReadyAnnouncement`]),
//! so it is tested without a registry or a socket.

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use crate::lease_keeper::LeaseKeeper;
use crate::peer_view::PeerView;
use crate::registry_api::Registration;
use crate::registry_client::RegistryClient;
use crate::shutdown::Shutdown;

/// The instance id used when none is configured: the host name, which is stable across
/// restarts on a VM running one instance per role.
pub fn default_instance_id() -> String {
    nix::unistd::gethostname()
        .ok()
        .and_then(|h| h.into_string().ok())
        .map(|h| {
            h.chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' {
                        c
                    } else {
                        '-'
                    }
                })
                .collect::<String>()
        })
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "0".to_string())
}

/// What this instance registers: its internal address, and as metadata its shard and,
/// for a role with a public API, the public URL (which the gateway's peers list).
pub(crate) fn registration(
    role: &str,
    instance_id: &str,
    address: &str,
    shard: u32,
    public_address: Option<&str>,
) -> Registration {
    let mut metadata = BTreeMap::from([("shard".to_string(), shard.to_string())]);
    if let Some(url) = public_address {
        metadata.insert("public_address".to_string(), url.to_string());
    }
    Registration {
        role: role.to_string(),
        instance_id: instance_id.to_string(),
        address: address.to_string(),
        version: env!("CARGO_PKG_VERSION").to_string(),
        metadata,
    }
}

/// Starts watching the catalog and, if `healthy`, registers at every registry; serves
/// on even when none accepts yet (the keeper retries in the background).
pub(crate) async fn register(
    registry_client: RegistryClient,
    registration: Registration,
    peers: &PeerView,
    watch_wait: Duration,
    shutdown: &Shutdown,
    healthy: bool,
) -> LeaseKeeper {
    peers.spawn_watch(registry_client.clone(), watch_wait, shutdown.clone());
    let keeper = LeaseKeeper::new(registry_client, registration);
    if !healthy {
        tracing::warn!("not healthy yet: registering once healthy");
    } else if keeper.start().await == 0 {
        tracing::warn!(
            "no registry accepted the registration yet; serving anyway and retrying in the background"
        );
    }
    keeper
}

/// What a ready instance tells: which instance, where, and how many registries hold it
/// (`None`: a role that does not register).
pub(crate) struct ReadyAnnouncement<'a> {
    pub(crate) role: &'a str,
    pub(crate) instance: &'a str,
    pub(crate) address: &'a str,
    pub(crate) public_address: Option<&'a str>,
    pub(crate) store: &'a Path,
    pub(crate) registered: Option<usize>,
}

impl ReadyAnnouncement<'_> {
    /// The `{"event":"ready",...}` line, with this process's id.
    pub(crate) fn line(&self, pid: u32) -> serde_json::Value {
        serde_json::json!({
            "event": "ready",
            "role": self.role,
            "instance": self.instance,
            "address": self.address,
            "public_address": self.public_address,
            "store": self.store.display().to_string(),
            "registered_at": self.registered,
            "pid": pid,
        })
    }

    /// The status systemd shows with `READY=1`; `registries` is how many are configured.
    pub(crate) fn status(&self, registries: usize) -> String {
        let (role, instance, address) = (self.role, self.instance, self.address);
        match self.registered {
            Some(n) => format!(
                "serving {role}/{instance} at {address}; registered at {n} of {registries} registries"
            ),
            None => format!("serving {role}/{instance} at {address}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_registration_carries_the_shard_and_a_public_url_when_there_is_one() {
        let r = registration("orders", "ord-1", "https://10.0.0.5:7710", 2, None);
        assert_eq!(
            (r.role.as_str(), r.instance_id.as_str(), r.address.as_str()),
            ("orders", "ord-1", "https://10.0.0.5:7710")
        );
        assert_eq!(r.version, env!("CARGO_PKG_VERSION"));
        assert_eq!(r.metadata, BTreeMap::from([("shard".into(), "2".into())]));
        let r = registration(
            "gateway",
            "gw-1",
            "https://127.0.0.1:41000",
            0,
            Some("https://shop.example:443"),
        );
        assert_eq!(
            r.metadata.get("public_address").map(String::as_str),
            Some("https://shop.example:443")
        );
        assert_eq!(r.address, "https://127.0.0.1:41000", "the internal one");
    }

    #[test]
    fn the_ready_line_and_status_say_where_and_how_registered() {
        let store = Path::new("data/orders-ord-1.redb");
        let ready = ReadyAnnouncement {
            role: "orders",
            instance: "ord-1",
            address: "https://127.0.0.1:7710",
            public_address: None,
            store,
            registered: Some(1),
        };
        let line = ready.line(42);
        assert_eq!(line["event"], "ready");
        assert_eq!(line["address"], "https://127.0.0.1:7710");
        assert_eq!(line["public_address"], serde_json::Value::Null);
        assert_eq!(line["store"], "data/orders-ord-1.redb");
        assert_eq!(
            (line["registered_at"].as_u64(), line["pid"].as_u64()),
            (Some(1), Some(42))
        );
        assert_eq!(
            ready.status(2),
            "serving orders/ord-1 at https://127.0.0.1:7710; registered at 1 of 2 registries"
        );
        let unregistered = ReadyAnnouncement {
            registered: None,
            ..ready
        };
        assert_eq!(
            unregistered.line(1)["registered_at"],
            serde_json::Value::Null
        );
        assert_eq!(
            unregistered.status(2),
            "serving orders/ord-1 at https://127.0.0.1:7710"
        );
    }
}
