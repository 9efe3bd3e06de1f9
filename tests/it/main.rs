//! The integration tests: one test binary that runs the built `svc` executable as real
//! processes and talks to them over real sockets, with mutual TLS and API keys as in
//! production.
//!
//! One module per area (the files next to this one); [`harness`] is what they share:
//! starting a topology of processes and tearing it down on drop, HTTP helpers, and the
//! shop's checks. One binary means the harness and the `svc` library are compiled and
//! linked once, and the test CA is made once per run.
//!
//! Run one area with a filter, e.g. `cargo test --test it chaos`; the `#[ignore]`d
//! measurements with `cargo test --release --test it mtls_cost -- --ignored --nocapture`.

mod harness;

mod bad_input;
mod bench;
mod card_data;
mod certs;
mod chaos;
mod cli;
mod dev;
mod discovery;
mod edge_attacks;
mod edge_input;
mod gateway_guard;
mod gateway_reload;
mod group_commit;
mod install;
mod internal_bad_input;
mod lease_expiry;
mod lifecycle;
mod log_rotation;
mod mtls;
mod mtls_cost;
mod observability;
mod observe_cost;
mod order_faults;
mod order_flow;
mod otlp;
mod prometheus_sd;
mod promtool;
mod registry_admission;
mod registry_ha;
mod registry_scale;
mod resilience;
mod roles_from_files;
mod shards;
mod shell_docs;
mod sidecar;
mod status;
mod systemd_notify;
mod systemd_reload;
mod tls_rotation;
mod tls_settings;
mod trace;
mod ui;
mod upgrade;
