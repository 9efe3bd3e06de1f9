//! svc: one executable that runs any role of an order-processing backend.
//!
//! - [`platform`]: servers, clients, discovery, config, storage, telemetry; no roles.
//! - [`roles`]: one module per role, each built on the platform.
//! - [`commands`]: the CLI subcommands (`run`, `dev`, `status`, `roles`, `config check`).

pub mod cli;
pub mod commands;
pub mod platform;
pub mod roles;
