//! Prometheus metrics of one process, served at `/metrics` in the text format.
//!
//! One registry per process; the server middleware records every request by route
//! pattern, method and status. Every label takes its values from a fixed set, whatever
//! a client sends: the route is a pattern the instance serves or `unmatched` (never the
//! raw path), the method one of HTTP's own or `other` ([`method_label`]), the status
//! three digits; otherwise anyone could grow the registry, and `/metrics`, without
//! bound, one made-up method or path at a time.
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
            &["role", "instance_id", "version"],
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
        method: &actix_web::http::Method,
        status: u16,
        elapsed: Duration,
    ) {
        let method = method_label(method);
        // The three digits of a known status are a static string: no allocation.
        let code = actix_web::http::StatusCode::from_u16(status).ok();
        let owned;
        let status = match &code {
            Some(code) => code.as_str(),
            None => {
                owned = status.to_string();
                owned.as_str()
            }
        };
        let labels = [route, method, status];
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

/// The `method` label of a request: the method's own name for HTTP's methods, `other`
/// for any extension method a client makes up.
pub(crate) fn method_label(method: &actix_web::http::Method) -> &'static str {
    use actix_web::http::Method as M;
    match *method {
        M::GET => "GET",
        M::HEAD => "HEAD",
        M::POST => "POST",
        M::PUT => "PUT",
        M::DELETE => "DELETE",
        M::PATCH => "PATCH",
        M::OPTIONS => "OPTIONS",
        M::TRACE => "TRACE",
        M::CONNECT => "CONNECT",
        _ => "other",
    }
}

#[cfg(test)]
mod tests {
    use actix_web::http::Method;

    use super::*;

    /// Issue 13: every made-up method used to become a label value of its own.
    #[test]
    fn made_up_methods_share_one_label_value() {
        let metrics = Metrics::new("gateway", "gw-0");
        for i in 0..100 {
            let method = Method::from_bytes(format!("BREW{i}").as_bytes()).unwrap();
            metrics.observe_request("unmatched", &method, 404, Duration::ZERO);
        }
        metrics.observe_request("/v1/x", &Method::GET, 200, Duration::ZERO);
        let text = metrics.render();
        assert!(!text.contains("BREW"), "{text}");
        let series = |method: &str| {
            text.lines()
                .filter(|l| l.starts_with("http_server_requests_total{"))
                .filter(|l| l.contains(&format!("method=\"{method}\"")))
                .count()
        };
        assert_eq!((series("other"), series("GET")), (1, 1), "{text}");
    }
}
