//! The platform layer of svc: everything an instance needs that is not a role's business.
//!
//! Servers, clients, discovery, config, storage and telemetry are each made here, once.
//! This crate cannot name a role (it does not depend on the `svc` crate, which holds
//! them); roles plug in through [`role::RoleStart`] and [`role::RoleContext`]. It has no
//! command line either: the `svc` crate parses flags and hands over typed values.
//!
//! What roles get is public; everything else is `pub(crate)` or private, so the surface
//! below is the whole contract with the `svc` crate. [`lifecycle::run`] runs an instance:
//! it calls the role's [`role::RoleStart`] with a [`role::RoleContext`] (manifest,
//! catalog, [`config::PlatformConfig`], [`store::Store`], [`client::ServiceClient`],
//! [`metrics::Metrics`], [`shutdown::Shutdown`]) and serves the [`role::Routes`] it
//! returns. Roles call each other with [`client::Call`] (and [`client::deadline`]),
//! answer errors with [`problem::Problem`], publish and consume through [`events`] (the
//! outbox, its [`events::OutboxRelay`], the inbox), route by key with [`shards`], read
//! their own config section with [`config::AppSections`] and [`config::PositiveDuration`],
//! and log units of work with [`telemetry`] ([`unit_of_work!`], [`end_unit_of_work!`]) and
//! [`trace_context`]. Smaller helpers: [`backoff::Backoff`], [`clock::now_ms`], [`ids`],
//! [`reload`], [`access::caller`], [`server::quiet`], [`fault`] (test hooks). The registry
//! role and the operator commands also use [`registry_api`], [`registry_client`],
//! [`peer_view`], [`manifest`] and [`tls`] (the PKI, identities, client configs).

pub mod access;
pub mod backoff;
pub mod client;
pub mod clock;
pub mod config;
pub mod edge;
pub mod events;
pub mod fault;
pub mod health_gate;
pub mod ids;
mod lease_keeper;
pub mod lifecycle;
mod listener;
pub mod manifest;
pub mod metrics;
pub mod path_template;
pub mod peer_view;
pub mod private_files;
pub mod problem;
pub mod registry_api;
pub mod registry_client;
pub mod reload;
pub mod role;
pub mod role_files;
pub mod route_table;
pub mod secret_key;
pub mod server;
pub mod shards;
pub mod shutdown;
pub mod store;
mod systemd;
pub mod telemetry;
pub mod tls;
pub mod trace_context;
