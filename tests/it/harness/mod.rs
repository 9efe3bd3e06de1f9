//! The test harness: runs real `svc` processes and talks to them over HTTP.
//!
//! - [`topology`]: a whole cluster, described by a [`Topology`] and started as a
//!   [`Cluster`] that restarts instances in place and SIGKILLs every one on drop.
//! - [`process`]: one child process ([`Svc`]): spawned with a clean environment, ready
//!   once it printed its `{"event":"ready"}` line, signalled (SIGTERM, SIGKILL, SIGSTOP
//!   and SIGCONT), and killed and reaped on drop, also when the test panics.
//! - [`sandbox`]: a temporary directory and the `svc run` commands that use it, for
//!   tests that start single processes with their own flags.
//! - [`http`]: clients with the cluster's certificates (no connection reuse), JSON
//!   helpers, [`wait_for`] (poll until a condition holds), catalog and peers views.
//! - [`shop`]: products, orders, problems, and the invariants checked once every saga
//!   has ended; [`shards`]: where an entity lives.
//! - [`fake_instance`]: an HTTPS server with a role's certificate that records what it
//!   is sent and keeps a registration, standing in for an instance of a role from a file.
//! - [`fake_app`]: a plain HTTP application recording what it receives, with a health
//!   switch, standing in for the application beside a sidecar (`svc run --app`).
//! - [`pki`]: the test CA and identities, made once per test run; [`tools`]: external
//!   tools some tests drive.
//!
//! Every test binds port 0, so tests run in parallel. The harness is compiled once with
//! every test module, so what none of them uses is dead code and the compiler says so.

pub mod fake_app;
pub mod fake_instance;
pub mod http;
pub mod pki;
pub mod process;
pub mod sandbox;
pub mod shards;
pub mod shop;
pub mod tools;
pub mod topology;

pub use fake_app::*;
pub use fake_instance::*;
pub use http::*;
pub use pki::*;
pub use process::*;
pub use sandbox::*;
pub use shards::*;
pub use shop::*;
pub use topology::*;
