//! Prometheus metrics of one process, served at `/metrics` in the text format.
//!
//! One registry per process; the server middleware records every request by route
//! pattern (never the raw path, which would explode cardinality), method and status.
//! Roles and platform pieces register their own collectors on the same registry.
//! On Linux the registry also holds the process's own figures ([`process`]):
//! `process_cpu_seconds_total` (to the microsecond), `process_resident_memory_bytes`,
//! open and maximum file descriptors, virtual memory, threads and start time, read at
//! each scrape (`svc bench` divides the CPU by the orders it placed).

#[cfg(target_os = "linux")]
pub mod process;

use std::time::Duration;

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder,
};

#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    duration: HistogramVec,
    connections: IntCounterVec,
}

impl Metrics {
    pub fn new(role: &str, instance: &str) -> Metrics {
        let registry = Registry::new();
        let requests = IntCounterVec::new(
            Opts::new(
                "http_server_requests_total",
                "HTTP requests served, by route pattern, method and status.",
            ),
            &["route", "method", "status"],
        )
        .expect("static metric definition");
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "http_server_request_duration_seconds",
                "Time to serve an HTTP request, by route pattern, method and status.",
            )
            .buckets(vec![
                0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                10.0, 30.0,
            ]),
            &["route", "method", "status"],
        )
        .expect("static metric definition");
        let connections = IntCounterVec::new(
            Opts::new(
                "svc_server_connections_total",
                "Connections accepted, by listener (internal, public); with TLS, counted once \
                 the handshake completed, so this is also the handshake count.",
            ),
            &["listener"],
        )
        .expect("static metric definition");
        let info = IntGaugeVec::new(
            Opts::new("svc_build_info", "Always 1; labels say what is running."),
            &["role", "instance", "version"],
        )
        .expect("static metric definition");
        info.with_label_values(&[role, instance, env!("CARGO_PKG_VERSION")])
            .set(1);
        for c in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(duration.clone()),
            Box::new(connections.clone()),
            Box::new(info),
        ] {
            registry.register(c).expect("metric names are unique");
        }
        #[cfg(target_os = "linux")]
        registry
            .register(Box::new(process::ProcessMetrics::for_self()))
            .expect("metric names are unique");
        Metrics {
            registry,
            requests,
            duration,
            connections,
        }
    }

    /// Counts the connections (TLS handshakes) one listener accepts.
    pub(crate) fn connections(&self, listener: &str) -> prometheus::IntCounter {
        self.connections.with_label_values(&[listener])
    }

    /// The registry roles add their own collectors to.
    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    pub(crate) fn observe_request(
        &self,
        route: &str,
        method: &str,
        status: u16,
        elapsed: Duration,
    ) {
        let status = status.to_string();
        let labels = [route, method, status.as_str()];
        self.requests.with_label_values(&labels).inc();
        self.duration
            .with_label_values(&labels)
            .observe(elapsed.as_secs_f64());
    }

    pub(crate) fn render(&self) -> String {
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed collectors.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
