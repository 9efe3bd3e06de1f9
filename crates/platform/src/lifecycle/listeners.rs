//! Step 2 of an instance's life: where its listeners bind, binding them, and the
//! address it is reached at.
//!
//! An instance has one internal listener (mutual TLS, unless `tls.insecure`); a role
//! with a public API (its manifest says `public`) also has a public one, which then
//! takes `listen`. Which address each binds is a plain function of the config
//! ([`ListenerPlan`]), and so is the address others are told ([`advertised_address`]);
//! only [`bind`] touches the network.

use std::net::{IpAddr, SocketAddr, TcpListener};
use std::sync::Arc;

use anyhow::Context as _;

use crate::config::PlatformConfig;
use crate::listener::Transport;
use crate::manifest::Manifest;
use crate::tls::{setup, TlsMaterial};

/// Where the listeners of an instance bind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ListenerPlan {
    internal: SocketAddr,
    /// Only for a role with a public API.
    public: Option<SocketAddr>,
}

impl ListenerPlan {
    /// A role with a public API binds that at `listen` (default: `bind_host` and the
    /// manifest's port) and its internal listener at `internal_listen` (default:
    /// `bind_host`, any free port). Any other role binds its one listener at `listen`.
    fn new(
        public_role: bool,
        manifest_port: u16,
        listen: Option<SocketAddr>,
        internal_listen: Option<SocketAddr>,
        bind_host: IpAddr,
    ) -> ListenerPlan {
        let listen = listen.unwrap_or(SocketAddr::new(bind_host, manifest_port));
        if public_role {
            ListenerPlan {
                internal: internal_listen.unwrap_or(SocketAddr::new(bind_host, 0)),
                public: Some(listen),
            }
        } else {
            ListenerPlan {
                internal: listen,
                public: None,
            }
        }
    }

    pub(crate) fn for_instance(config: &PlatformConfig, manifest: &Manifest) -> ListenerPlan {
        ListenerPlan::new(
            manifest.public,
            manifest.port,
            config.listen,
            config.internal_listen,
            config.bind_host,
        )
    }
}

/// One bound listener, how it speaks, and the URL it is reached at.
pub(crate) struct Listening {
    pub(crate) listener: TcpListener,
    pub(crate) transport: Transport,
    pub(crate) address: String,
}

/// The bound listeners of an instance, and the certificates to keep fresh.
pub(crate) struct Bound {
    pub(crate) internal: Listening,
    pub(crate) public: Option<Listening>,
    /// The internal material and the public certificate, whichever there are.
    pub(crate) reloading: Vec<Arc<dyn setup::Reloadable>>,
}

/// Binds the listeners of `plan` (port 0: any free port, and the bound one is
/// advertised). The public transport (and its certificate) is loaded only for a public
/// listener.
pub(crate) fn bind(
    plan: ListenerPlan,
    config: &PlatformConfig,
    tls: Option<&Arc<TlsMaterial>>,
) -> anyhow::Result<Bound> {
    let advertise_host = config.advertise_host.as_deref();
    let mut reloading: Vec<Arc<dyn setup::Reloadable>> = Vec::new();
    let transport = match tls {
        Some(material) => {
            reloading.push(material.clone());
            Transport::MutualTls(material.clone())
        }
        None => Transport::Plain,
    };
    let (listener, bound) = bind_one(plan.internal)?;
    let internal = Listening {
        address: advertised_address(transport.scheme(), bound, advertise_host),
        listener,
        transport,
    };
    let public = match plan.public {
        Some(at) => {
            let (transport, public_cert) = setup::public_transport(&config.tls)?;
            if let Some(cert) = public_cert {
                reloading.push(cert);
            }
            let (listener, bound) = bind_one(at)?;
            Some(Listening {
                address: advertised_address(transport.scheme(), bound, advertise_host),
                listener,
                transport,
            })
        }
        None => None,
    };
    Ok(Bound {
        internal,
        public,
        reloading,
    })
}

fn bind_one(at: SocketAddr) -> anyhow::Result<(TcpListener, SocketAddr)> {
    let listener = TcpListener::bind(at).with_context(|| format!("cannot listen on {at}"))?;
    let bound = listener.local_addr()?;
    Ok((listener, bound))
}

/// The base URL of a listener bound at `bound`: at `advertise_host` when set, else at
/// the bound IP, or at the host name when bound to every interface (peers need a name
/// that reaches this host).
fn advertised_address(scheme: &str, bound: SocketAddr, advertise_host: Option<&str>) -> String {
    match advertise_host {
        Some(host) => format!("{scheme}://{host}:{}", bound.port()),
        None if bound.ip().is_unspecified() => {
            format!(
                "{scheme}://{}:{}",
                super::default_instance_id(),
                bound.port()
            )
        }
        None => format!("{scheme}://{bound}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    const LOCAL: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    #[test]
    fn a_role_without_a_public_api_binds_one_listener_at_listen() {
        let plan = ListenerPlan::new(false, 7710, None, None, LOCAL);
        assert_eq!(
            plan.internal,
            addr("127.0.0.1:7710"),
            "bind_host, manifest port"
        );
        assert_eq!(plan.public, None);
        let plan = ListenerPlan::new(
            false,
            7710,
            Some(addr("0.0.0.0:9000")),
            Some(addr("127.0.0.1:9001")),
            LOCAL,
        );
        assert_eq!(plan.internal, addr("0.0.0.0:9000"));
        assert_eq!(plan.public, None, "internal_listen means nothing here");
    }

    #[test]
    fn a_public_role_binds_listen_publicly_and_its_internal_listener_elsewhere() {
        let plan = ListenerPlan::new(true, 8080, None, None, LOCAL);
        assert_eq!(plan.public, Some(addr("127.0.0.1:8080")));
        assert_eq!(plan.internal, addr("127.0.0.1:0"), "any free port");
        let plan = ListenerPlan::new(
            true,
            8080,
            Some(addr("0.0.0.0:443")),
            Some(addr("10.0.0.5:7701")),
            LOCAL,
        );
        assert_eq!(plan.public, Some(addr("0.0.0.0:443")));
        assert_eq!(plan.internal, addr("10.0.0.5:7701"));
    }

    #[test]
    fn the_advertised_address_has_the_bound_port_and_a_reachable_host() {
        let bound = addr("127.0.0.1:41234");
        assert_eq!(
            advertised_address("https", bound, None),
            "https://127.0.0.1:41234"
        );
        assert_eq!(
            advertised_address("http", bound, Some("orders-1.internal")),
            "http://orders-1.internal:41234"
        );
        let everywhere = advertised_address("https", addr("0.0.0.0:7710"), None);
        assert_eq!(
            everywhere,
            format!("https://{}:7710", super::super::default_instance_id())
        );
        assert!(!everywhere.contains("0.0.0.0"), "{everywhere}");
    }
}
