//! The platform layer: everything an instance needs that is not a role's business.
//!
//! Servers, clients, discovery, config, storage and telemetry are each made here, once.
//! This layer never imports a role; roles plug in through [`role::RoleEntry`].

pub mod access;
pub mod client;
pub mod config;
pub mod events;
pub mod ids;
pub mod lease_keeper;
pub mod lifecycle;
pub mod listener;
pub mod manifest;
pub mod metrics;
pub mod peer_view;
pub mod problem;
pub mod registry_api;
pub mod registry_client;
pub mod role;
pub mod server;
pub mod shards;
pub mod shutdown;
pub mod store;
pub mod systemd;
pub mod telemetry;
pub mod tls;
pub mod trace_context;
