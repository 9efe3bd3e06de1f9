//! The platform layer of svc: everything an instance needs that is not a role's business.
//!
//! Servers, clients, discovery, config, storage and telemetry are each made here, once.
//! This crate cannot name a role (it does not depend on the `svc` crate, which holds
//! them); roles plug in through [`role::RoleStart`] and [`role::RoleContext`]. It has no command line either: the
//! `svc` crate parses flags and hands over typed values.

pub mod access;
pub mod backoff;
pub mod client;
pub mod clock;
pub mod config;
pub mod events;
pub mod fault;
pub mod ids;
mod lease_keeper;
pub mod lifecycle;
mod listener;
pub mod manifest;
pub mod metrics;
pub mod peer_view;
pub mod problem;
pub mod registry_api;
pub mod registry_client;
pub mod reload;
pub mod role;
pub mod server;
pub mod shards;
pub mod shutdown;
pub mod store;
mod systemd;
pub mod telemetry;
pub mod tls;
pub mod trace_context;
