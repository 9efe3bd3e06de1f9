//! `systemctl reload` returns when the reload is done: on SIGHUP an instance tells the
//! notify socket `RELOADING=1` with `MONOTONIC_USEC` (the reload's start, on the
//! monotonic clock), reloads every file watcher it has (the gateway: TLS certificates
//! and API keys), and only then `READY=1`, which is what `Type=notify-reload` waits for.

use std::os::unix::net::UnixDatagram;
use std::time::Duration;

use nix::sys::signal::Signal;
use nix::time::{clock_gettime, ClockId};

use crate::harness::*;

fn monotonic_usec() -> u64 {
    let t = clock_gettime(ClockId::CLOCK_MONOTONIC).unwrap();
    t.tv_sec() as u64 * 1_000_000 + t.tv_nsec() as u64 / 1_000
}

/// The next datagram, within a few seconds.
fn next_message(socket: &UnixDatagram) -> String {
    let mut buf = [0u8; 4096];
    let n = socket
        .recv(&mut buf)
        .expect("a notify message within the socket's timeout");
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn sighup_sends_reloading_with_its_time_then_ready_once_every_watcher_reloaded() {
    let sandbox = Sandbox::new();
    let socket_path = sandbox.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let registry = sandbox.start_registry();
    let mut cmd = sandbox.run_command("gateway", "gw-reload", &registry.url);
    cmd.env("NOTIFY_SOCKET", &socket_path);
    let mut gateway = sandbox.start_cmd(cmd, "gateway", "gw-reload");
    let ready = next_message(&socket);
    assert!(ready.starts_with("READY=1\n"), "{ready}");

    let mut last_usec = 0;
    for round in 1..=2 {
        let before = monotonic_usec();
        gateway.signal(Signal::SIGHUP);
        let reloading = next_message(&socket);
        let mut lines = reloading.lines();
        assert_eq!(lines.next(), Some("RELOADING=1"), "{reloading}");
        let usec: u64 = lines
            .next()
            .and_then(|l| l.strip_prefix("MONOTONIC_USEC="))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no MONOTONIC_USEC in {reloading:?}"));
        assert!(
            usec >= before && usec <= monotonic_usec() && usec > last_usec,
            "MONOTONIC_USEC={usec}, signal sent at {before}"
        );
        last_usec = usec;
        let done = next_message(&socket);
        assert!(done.starts_with("READY=1\n"), "round {round}: {done}");
        // READY=1 followed the reload of both watchers (logged before the summary line
        // that precedes READY=1).
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        while gateway
            .stderr()
            .matches("SIGHUP: reload done watchers=2")
            .count()
            < round
        {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round}: no `SIGHUP: reload done watchers=2` in:\n{}",
                gateway.stderr()
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        let log = gateway.stderr();
        let summary = log
            .match_indices("SIGHUP: reload done")
            .nth(round - 1)
            .unwrap_or_else(|| panic!("round {round}: no summary in:\n{log}"))
            .0;
        for what in ["tls certificates reloaded", "api keys reloaded"] {
            let reloaded = log[..summary].matches(what).count();
            assert!(
                reloaded >= round,
                "round {round}: {what} {reloaded}x:\n{log}"
            );
        }
    }

    // A stop still says STOPPING=1.
    gateway.signal(Signal::SIGTERM);
    let stopping = next_message(&socket);
    assert!(stopping.starts_with("STOPPING=1"), "{stopping}");
    let status = gateway
        .wait_exit(EXIT_TIMEOUT)
        .expect("exits after SIGTERM");
    assert!(status.success(), "{status}");
}
