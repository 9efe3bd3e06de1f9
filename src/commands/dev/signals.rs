//! The signals that stop `svc dev`: SIGINT (Ctrl-C) and SIGTERM.
//!
//! Installed before any child starts, so a signal during start-up is never lost (and
//! never kills `svc dev` with its default action, which would skip the orderly stop).

use std::io;

use tokio::signal::unix::{signal, Signal, SignalKind};

pub struct StopSignals {
    term: Signal,
    int: Signal,
}

impl StopSignals {
    pub fn install() -> io::Result<StopSignals> {
        Ok(StopSignals {
            term: signal(SignalKind::terminate())?,
            int: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next stop signal and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.term.recv() => "SIGTERM",
            _ = self.int.recv() => "SIGINT",
        }
    }
}
