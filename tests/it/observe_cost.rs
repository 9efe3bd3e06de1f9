//! What logging and metrics cost one request, measured in-process (no network, so the
//! difference is not lost in socket noise), every variant in the same run and in
//! interleaved rounds so machine drift hits all of them alike:
//!
//! - `bare`: the route alone, no platform middleware;
//! - `observe, no subscriber`: trace context, span, metrics; tracing disabled;
//! - `observe, stderr at info`: as `svc run` by default (the access line is debug, so
//!   it is filtered; the request span and its fields are still built);
//! - `observe, + log file`: as `svc run --log-file` / `svc dev`: also one JSON access
//!   line appended to a file per request;
//! - `observe, + OTLP export`: as `svc run` at info with `otlp.enabled`: the request span
//!   also becomes an OpenTelemetry span with svc's ids, batched and POSTed (on the
//!   exporter's own thread) to a collector stub in this process that answers 200.
//!
//! Ignored by `cargo test`; run it in release:
//!
//!     cargo test --release --test observe_cost -- --ignored --nocapture

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::Arc;
use std::time::{Duration, Instant};

use actix_web::{middleware::from_fn, test, web, App, HttpResponse};
use svc_platform::config::{LogFormat, OtlpSettings};
use svc_platform::metrics::Metrics;
use svc_platform::peer_view::PeerView;
use svc_platform::server::{self, PlatformState, Readiness};
use svc_platform::store::Store;
use svc_platform::telemetry;

const ROUNDS: usize = 20;
const PER_ROUND: usize = 500;

async fn thing() -> HttpResponse {
    HttpResponse::Ok().body("ok")
}

/// A collector stub: answers 200 to every request; returns its base URL.
fn collector_stub() -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut writer = stream;
                loop {
                    let mut length = 0usize;
                    loop {
                        let mut line = String::new();
                        if reader.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        let lower = line.trim_end().to_ascii_lowercase();
                        if lower.is_empty() {
                            break;
                        }
                        if let Some(v) = lower.strip_prefix("content-length:") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; length];
                    if reader.read_exact(&mut body).is_err() {
                        return;
                    }
                    let ok = "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n";
                    if writer.write_all(ok.as_bytes()).is_err() {
                        return;
                    }
                }
            });
        }
    });
    url
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[actix_web::test]
#[ignore = "a measurement, not a check: run with --release --ignored --nocapture"]
async fn cost_of_logging_and_metrics_per_request() {
    let dir = tempfile::tempdir().unwrap();
    let store = Arc::new(Store::open(&dir.path().join("bench.redb")).unwrap());
    let platform = PlatformState {
        role: "inventory".into(),
        instance_id: "inv-bench".into(),
        metrics: Metrics::new("inventory", "inv-bench"),
        readiness: Readiness::default(),
        peers: PeerView::restore(store),
        max_body_bytes: 64 * 1024,
    };
    let bare = test::init_service(App::new().route("/v1/things/{id}", web::get().to(thing))).await;
    let observed = {
        let platform = platform.clone();
        test::init_service(
            App::new()
                .wrap(from_fn(server::observe))
                .configure(|cfg| server::configure(cfg, &platform))
                .route("/v1/things/{id}", web::get().to(thing)),
        )
        .await
    };
    let log_path = dir.path().join("inv-bench.jsonl");

    let names = [
        "bare",
        "observe, no subscriber",
        "observe, stderr at info",
        "observe, + log file",
        "observe, + OTLP export",
    ];
    let export = telemetry::otlp::Export::new(
        &OtlpSettings {
            enabled: true,
            endpoint: collector_stub(),
            ..Default::default()
        },
        "inventory",
        "inv-bench",
    )
    .unwrap();
    let mut samples: Vec<Vec<Duration>> = vec![Vec::new(); names.len()];
    for _ in 0..ROUNDS {
        for (v, times) in samples.iter_mut().enumerate() {
            // Each variant's subscriber is this thread's default only while it runs.
            let _guard = match v {
                2 => Some(tracing::subscriber::set_default(telemetry::subscriber(
                    LogFormat::Json,
                    "inventory",
                    "inv-bench",
                    None,
                    std::io::sink,
                ))),
                3 => Some(tracing::subscriber::set_default(telemetry::subscriber(
                    LogFormat::Json,
                    "inventory",
                    "inv-bench",
                    Some(telemetry::open_log_file(&log_path).unwrap()),
                    std::io::sink,
                ))),
                4 => {
                    let layer = telemetry::otlp_layer(&export);
                    Some(tracing::subscriber::set_default(
                        tracing_subscriber::layer::SubscriberExt::with(
                            telemetry::subscriber(
                                LogFormat::Json,
                                "inventory",
                                "inv-bench",
                                None,
                                std::io::sink,
                            ),
                            layer,
                        ),
                    ))
                }
                _ => Some(tracing::subscriber::set_default(
                    tracing::subscriber::NoSubscriber::default(),
                )),
            };
            export.set_active(v == 4);
            for n in 0..PER_ROUND {
                let req = test::TestRequest::get()
                    .uri(&format!("/v1/things/{n}"))
                    .insert_header((
                        "traceparent",
                        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    ))
                    .to_request();
                let started = Instant::now();
                let status = if v == 0 {
                    test::call_service(&bare, req).await.status()
                } else {
                    test::call_service(&observed, req).await.status()
                };
                times.push(started.elapsed());
                assert!(status.is_success());
            }
        }
    }

    println!(
        "\n{} requests per variant, {ROUNDS} interleaved rounds",
        ROUNDS * PER_ROUND
    );
    println!(
        "{:<26} {:>9} {:>9} {:>9} {:>12}",
        "variant", "p50", "p90", "p99", "p50 - bare"
    );
    let mut p50_bare = Duration::ZERO;
    for (name, times) in names.iter().zip(&mut samples) {
        times.sort();
        let p50 = percentile(times, 0.5);
        if *name == "bare" {
            p50_bare = p50;
        }
        println!(
            "{name:<26} {:>7.2}µs {:>7.2}µs {:>7.2}µs {:>10.2}µs",
            p50.as_secs_f64() * 1e6,
            percentile(times, 0.9).as_secs_f64() * 1e6,
            percentile(times, 0.99).as_secs_f64() * 1e6,
            (p50.as_secs_f64() - p50_bare.as_secs_f64()) * 1e6,
        );
    }
    export.shutdown();
    let text = std::fs::read_to_string(&log_path).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines.len(),
        ROUNDS * PER_ROUND,
        "one access line per request"
    );
    let bytes: usize = lines.iter().map(|l| l.len() + 1).sum();
    println!(
        "log file: {} lines, {:.0} bytes per line on average; a line: {}",
        lines.len(),
        bytes as f64 / lines.len() as f64,
        lines[0]
    );
}
