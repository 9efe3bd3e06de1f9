//! The systemd notify protocol, against a real datagram socket standing in for systemd:
//! `READY=1` only once the instance serves, `WATCHDOG=1` at half of `WATCHDOG_USEC`, and
//! `STOPPING=1` when SIGTERM starts the shutdown.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::net::UnixDatagram;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::harness::*;
use nix::sys::signal::Signal;

/// One datagram as received, and whether the instance answered `/health/ready` with
/// 200 right after `READY=1` arrived.
#[derive(Debug, Clone)]
struct Received {
    at: Instant,
    text: String,
    ready_then: Option<bool>,
}

/// `GET /health/ready` over a blocking mutual-TLS socket (no async runtime in the
/// receiving thread).
fn health_ready(port: u16) -> bool {
    let Ok(tcp) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = tcp.set_read_timeout(Some(Duration::from_secs(2)));
    let config = Arc::new(svc_platform::tls::client_config(&material("operator")));
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let Ok(conn) = rustls::ClientConnection::new(config, name) else {
        return false;
    };
    let mut s = rustls::StreamOwned::new(conn, tcp);
    let request = "GET /health/ready HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    if s.write_all(request.as_bytes()).is_err() {
        return false;
    }
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    answer.starts_with("HTTP/1.1 200")
}

fn free_port() -> u16 {
    dead_url()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("a port")
}

#[test]
fn ready_watchdog_and_stopping_reach_the_notify_socket() {
    let sandbox = Sandbox::new();
    let socket_path = sandbox.dir.path().join("notify.sock");
    let socket = UnixDatagram::bind(&socket_path).expect("bind the notify socket");
    socket
        .set_read_timeout(Some(Duration::from_millis(50)))
        .unwrap();
    let port = free_port();
    let received = Arc::new(Mutex::new(Vec::<Received>::new()));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let receiver = {
        let (received, stop) = (received.clone(), stop.clone());
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while !stop.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok(n) = socket.recv(&mut buf) else {
                    continue;
                };
                let text = String::from_utf8_lossy(&buf[..n]).into_owned();
                let at = Instant::now();
                // Checked at once: READY=1 must mean the instance answers already.
                let ready_then = text
                    .lines()
                    .any(|l| l == "READY=1")
                    .then(|| health_ready(port));
                received.lock().unwrap().push(Received {
                    at,
                    text,
                    ready_then,
                });
            }
        })
    };

    let mut cmd = svc_command();
    cmd.arg("run")
        .args(["--role", "registry", "--instance-id", "reg-sd"])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .arg("--data-dir")
        .arg(sandbox.data_dir())
        .env("NOTIFY_SOCKET", &socket_path)
        .env("WATCHDOG_USEC", "200000");
    let mut registry = Svc::spawn(cmd, "registry/reg-sd").unwrap_or_else(|e| panic!("{e}"));
    let ready_line_seen = Instant::now();

    // READY=1, with a status line, and the instance was serving when it arrived.
    let deadline = Instant::now() + Duration::from_secs(5);
    let ready = loop {
        let found = received
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.ready_then.is_some())
            .cloned();
        if let Some(r) = found {
            break r;
        }
        assert!(
            Instant::now() < deadline,
            "no READY=1 within 5s of the ready line; got {:?}",
            received.lock().unwrap()
        );
        std::thread::sleep(Duration::from_millis(10));
    };
    assert_eq!(
        ready.ready_then,
        Some(true),
        "READY=1 before /health/ready: {ready:?}"
    );
    assert!(
        ready
            .text
            .contains("STATUS=serving registry/reg-sd at https://127.0.0.1:"),
        "{ready:?}"
    );

    // Watchdog pings keep coming, about every 100 ms (half of 200 ms).
    std::thread::sleep(Duration::from_millis(1200));
    let pings: Vec<Instant> = received
        .lock()
        .unwrap()
        .iter()
        .filter(|r| r.text == "WATCHDOG=1" && r.at >= ready_line_seen)
        .map(|r| r.at)
        .collect();
    assert!(
        pings.len() >= 6,
        "{} watchdog pings in 1.2s, expected about 12",
        pings.len()
    );
    let longest_gap = pings
        .windows(2)
        .map(|w| w[1] - w[0])
        .max()
        .unwrap_or_default();
    // systemd would act after 200 ms; allow a loaded CI machine some slack.
    assert!(
        longest_gap < Duration::from_millis(400),
        "watchdog gap of {longest_gap:?}"
    );

    // SIGTERM: STOPPING=1 first, then a clean exit.
    registry.signal(Signal::SIGTERM);
    let status = registry
        .wait_exit(EXIT_TIMEOUT)
        .expect("the registry exits after SIGTERM");
    assert!(status.success(), "{status}");
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    receiver.join().unwrap();
    let all = received.lock().unwrap().clone();
    let stopping = all
        .iter()
        .position(|r| r.text.lines().any(|l| l == "STOPPING=1"))
        .unwrap_or_else(|| panic!("no STOPPING=1 in {all:?}"));
    let ready_at = all.iter().position(|r| r.ready_then.is_some()).unwrap();
    assert!(ready_at < stopping, "{all:?}");
    assert!(
        all[stopping].text.contains("STATUS=SIGTERM"),
        "{:?}",
        all[stopping]
    );
    assert_eq!(
        all.iter().filter(|r| r.ready_then.is_some()).count(),
        1,
        "READY=1 sent more than once: {all:?}"
    );
}
