//! Just enough of the Prometheus text format to read an instance's `/metrics`: samples
//! with labels, and the figures `svc status` shows (request count, 5xx count, latency
//! histogram) summed over the routes that are real traffic.
//!
//! The probe routes (`/health/*`, `/metrics`) are left out: `svc status` itself calls
//! them, and a monitoring system scrapes them, so they would show as load that is not.

use std::collections::BTreeMap;

pub const REQUESTS: &str = "http_server_requests_total";
pub const DURATION_BUCKET: &str = "http_server_request_duration_seconds_bucket";

/// Routes that are the platform's own probes, never counted as traffic.
const PROBE_ROUTES: &[&str] = &["/health/live", "/health/ready", "/metrics"];

#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub name: String,
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Parses the samples of a text exposition; comments and malformed lines are skipped
/// (an instance of another version may add what this one does not know).
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(parse_line)
        .collect()
}

fn parse_line(line: &str) -> Option<Sample> {
    let name_end = line.find(['{', ' ']).unwrap_or(line.len());
    let name = &line[..name_end];
    let mut rest = &line[name_end..];
    let mut labels = BTreeMap::new();
    if let Some(inner) = rest.strip_prefix('{') {
        let (parsed, after) = parse_labels(inner)?;
        labels = parsed;
        rest = after;
    }
    // The value, then an optional timestamp.
    let value = rest.split_whitespace().next()?;
    let value = match value {
        "+Inf" => f64::INFINITY,
        "-Inf" => f64::NEG_INFINITY,
        v => v.parse().ok()?,
    };
    (!name.is_empty()).then(|| Sample {
        name: name.to_string(),
        labels,
        value,
    })
}

/// `a="x",b="y\"z"}` → labels and the text after `}`.
fn parse_labels(mut s: &str) -> Option<(BTreeMap<String, String>, &str)> {
    let mut labels = BTreeMap::new();
    loop {
        s = s.trim_start_matches([',', ' ']);
        if let Some(after) = s.strip_prefix('}') {
            return Some((labels, after));
        }
        let eq = s.find('=')?;
        let key = s[..eq].trim().to_string();
        s = s[eq + 1..].strip_prefix('"')?;
        let mut value = String::new();
        let mut chars = s.char_indices();
        let end = loop {
            let (i, c) = chars.next()?;
            match c {
                '\\' => match chars.next()?.1 {
                    'n' => value.push('\n'),
                    other => value.push(other),
                },
                '"' => break i,
                c => value.push(c),
            }
        };
        labels.insert(key, value);
        s = &s[end + 1..];
    }
}

/// What one scrape says about traffic, probes left out.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Figures {
    pub requests: f64,
    pub errors_5xx: f64,
    /// Cumulative latency buckets summed over routes: (upper bound in seconds, count).
    pub buckets: Vec<(f64, f64)>,
}

impl Figures {
    pub fn from_samples(samples: &[Sample]) -> Figures {
        let traffic = |s: &Sample| {
            !s.labels
                .get("route")
                .is_some_and(|r| PROBE_ROUTES.contains(&r.as_str()))
        };
        let mut figures = Figures::default();
        let mut buckets: BTreeMap<u64, (f64, f64)> = BTreeMap::new();
        for s in samples.iter().filter(|s| traffic(s)) {
            if s.name == REQUESTS {
                figures.requests += s.value;
                if s.labels.get("status").is_some_and(|c| c.starts_with('5')) {
                    figures.errors_5xx += s.value;
                }
            } else if s.name == DURATION_BUCKET {
                let Some(le) = s.labels.get("le").and_then(|le| parse_le(le)) else {
                    continue;
                };
                // Keyed by the bits of the bound: finite positive floats order like them.
                buckets.entry(le.to_bits()).or_insert((le, 0.0)).1 += s.value;
            }
        }
        figures.buckets = buckets.into_values().collect();
        figures
    }

    /// What happened between `earlier` and `self` (a restarted instance resets its
    /// counters: then everything since the restart).
    pub fn since(&self, earlier: &Figures) -> Figures {
        if self.requests < earlier.requests {
            return self.clone();
        }
        let before = |le: f64| {
            earlier
                .buckets
                .iter()
                .find(|(l, _)| *l == le)
                .map_or(0.0, |(_, c)| *c)
        };
        Figures {
            requests: self.requests - earlier.requests,
            errors_5xx: self.errors_5xx - earlier.errors_5xx,
            buckets: self
                .buckets
                .iter()
                .map(|(le, c)| (*le, (c - before(*le)).max(0.0)))
                .collect(),
        }
    }

    /// The `q` quantile of the latency in seconds, interpolated within its bucket the way
    /// Prometheus' `histogram_quantile` does; `None` without observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let total = self.buckets.last().map(|(_, c)| *c)?;
        if total <= 0.0 {
            return None;
        }
        let rank = q * total;
        let mut lower = (0.0, 0.0);
        for &(le, count) in &self.buckets {
            if count >= rank {
                if le.is_infinite() {
                    // Above the last finite bound: that bound is all we know.
                    return Some(lower.0);
                }
                let width = count - lower.1;
                let within = if width > 0.0 {
                    (rank - lower.1) / width
                } else {
                    1.0
                };
                return Some(lower.0 + (le - lower.0) * within);
            }
            lower = (le, count);
        }
        Some(lower.0)
    }
}

fn parse_le(le: &str) -> Option<f64> {
    match le {
        "+Inf" => Some(f64::INFINITY),
        v => v.parse().ok().filter(|v: &f64| *v >= 0.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = r#"# HELP http_server_requests_total HTTP requests served.
# TYPE http_server_requests_total counter
http_server_requests_total{method="GET",route="/v1/products/{sku}",status="200"} 90
http_server_requests_total{method="POST",route="/v1/orders",status="503"} 10
http_server_requests_total{method="GET",route="/metrics",status="200"} 1000
http_server_request_duration_seconds_bucket{method="GET",route="/v1/products/{sku}",status="200",le="0.01"} 50
http_server_request_duration_seconds_bucket{method="GET",route="/v1/products/{sku}",status="200",le="0.1"} 90
http_server_request_duration_seconds_bucket{method="GET",route="/v1/products/{sku}",status="200",le="+Inf"} 90
http_server_request_duration_seconds_bucket{method="POST",route="/v1/orders",status="503",le="0.01"} 0
http_server_request_duration_seconds_bucket{method="POST",route="/v1/orders",status="503",le="0.1"} 0
http_server_request_duration_seconds_bucket{method="POST",route="/v1/orders",status="503",le="+Inf"} 10
http_server_request_duration_seconds_bucket{method="GET",route="/metrics",status="200",le="0.01"} 1000
svc_build_info{instance_id="a \"quoted\" one",role="orders",version="0.1.0"} 1
"#;

    #[test]
    fn parses_samples_with_escaped_labels() {
        let samples = parse(TEXT);
        assert_eq!(samples.len(), 11);
        let info = samples.iter().find(|s| s.name == "svc_build_info").unwrap();
        assert_eq!(info.labels["instance_id"], "a \"quoted\" one");
        assert_eq!(info.value, 1.0);
        assert!(parse("garbage{a=1} x\nok 2").len() == 1);
    }

    #[test]
    fn figures_leave_probes_out() {
        let f = Figures::from_samples(&parse(TEXT));
        assert_eq!(f.requests, 100.0);
        assert_eq!(f.errors_5xx, 10.0);
        assert_eq!(
            f.buckets,
            vec![(0.01, 50.0), (0.1, 90.0), (f64::INFINITY, 100.0)]
        );
        // p50: rank 50 is the top of the first bucket; p99 is beyond the last bound.
        assert_eq!(f.quantile(0.5), Some(0.01));
        assert_eq!(f.quantile(0.99), Some(0.1));
        // p70: rank 70, 20 of the 40 in (0.01, 0.1].
        let p70 = f.quantile(0.7).unwrap();
        assert!((p70 - 0.055).abs() < 1e-9, "{p70}");
    }

    #[test]
    fn a_window_is_the_difference_of_two_scrapes() {
        let before = Figures::from_samples(&parse(TEXT));
        let after = Figures {
            requests: 110.0,
            errors_5xx: 10.0,
            buckets: vec![(0.01, 60.0), (0.1, 100.0), (f64::INFINITY, 110.0)],
        };
        let w = after.since(&before);
        assert_eq!(w.requests, 10.0);
        assert_eq!(w.errors_5xx, 0.0);
        // 10 new requests in each bucket: the median is half-way up the first.
        assert_eq!(w.quantile(0.5), Some(0.005));
        assert_eq!(Figures::default().quantile(0.99), None);
        // A restart resets the counters: the window is what the new process counted.
        let restarted = Figures {
            requests: 3.0,
            ..Figures::default()
        };
        assert_eq!(restarted.since(&before).requests, 3.0);
    }
}
