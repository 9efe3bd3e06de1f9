//! svc: one executable that runs any role of an order-processing backend.
//!
//! - [`svc_platform`] (crates/platform): servers, clients, discovery, config, storage,
//!   telemetry; a crate of its own that cannot name a role.
//! - [`config`]: the application's config: the platform's keys and each role's section.
//! - [`roles`]: one module per role, each built on the platform.
//! - [`sidecar`]: a role from a file run beside its application (`svc run --app`).
//! - [`domain`]: values more than one role parses (card numbers, idempotency keys),
//!   each by one rule.
//! - [`commands`]: the CLI subcommands (`run`, `dev`, `status`, `roles`, `config check`).

pub mod cli;
pub mod commands;
pub mod config;
pub mod domain;
pub mod roles;
pub mod sidecar;
