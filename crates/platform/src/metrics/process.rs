//! The process's own figures on `/metrics`: the prometheus crate's process collector
//! (`process_resident_memory_bytes`, `process_open_fds`, `process_threads`, ...), with
//! `process_cpu_seconds_total` exported to the microsecond instead of in whole seconds.
//!
//! The crate's collector keeps CPU time in an integer counter (upstream
//! tikv/rust-prometheus#451), so a process that used 0.9 s of CPU shows 0: useless for
//! `svc bench`, which divides a few seconds of CPU by thousands of orders. This wrapper
//! serves every family of that collector and replaces the CPU one with a float counter
//! read from `getrusage(RUSAGE_SELF)` (user + system time) at each scrape, under the
//! same name, help and type (counter), so dashboards and `rate()` read it as before.

use std::sync::atomic::{AtomicU64, Ordering};

use prometheus::core::{Collector, Desc};
use prometheus::process_collector::ProcessCollector;
use prometheus::proto::MetricFamily;
use prometheus::{Counter, Opts};

pub const CPU_SECONDS: &str = "process_cpu_seconds_total";

/// [`ProcessCollector::for_self`] with a precise CPU counter; see the module docs.
pub struct ProcessMetrics {
    inner: ProcessCollector,
    cpu_seconds: Counter,
    /// The CPU time last exported, in microseconds: concurrent scrapes each add only
    /// what the other has not, so the counter never goes past the process's CPU time.
    exported_us: AtomicU64,
}

impl ProcessMetrics {
    pub fn for_self() -> ProcessMetrics {
        let cpu_seconds = Counter::with_opts(Opts::new(
            CPU_SECONDS,
            "Total user and system CPU time spent in seconds.",
        ))
        .expect("static metric definition");
        ProcessMetrics {
            inner: ProcessCollector::for_self(),
            cpu_seconds,
            exported_us: AtomicU64::new(0),
        }
    }

    /// Moves the counter up to the CPU time used so far.
    fn catch_up(&self) {
        let Some(now_us) = cpu_time_us() else {
            return;
        };
        let before = self.exported_us.fetch_max(now_us, Ordering::AcqRel);
        if now_us > before {
            self.cpu_seconds.inc_by((now_us - before) as f64 / 1e6);
        }
    }
}

/// User plus system CPU time of this process (every thread), in microseconds.
fn cpu_time_us() -> Option<u64> {
    use nix::sys::resource::{getrusage, UsageWho};
    let usage = getrusage(UsageWho::RUSAGE_SELF).ok()?;
    let us = |t: nix::sys::time::TimeVal| {
        u64::try_from(t.tv_sec()).unwrap_or(0) * 1_000_000 + u64::try_from(t.tv_usec()).unwrap_or(0)
    };
    Some(us(usage.user_time()) + us(usage.system_time()))
}

impl Collector for ProcessMetrics {
    /// The inner collector's descriptions: they include `process_cpu_seconds_total`
    /// with the same name and help as the counter served in its place.
    fn desc(&self) -> Vec<&Desc> {
        self.inner.desc()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.catch_up();
        let mut families: Vec<MetricFamily> = self
            .inner
            .collect()
            .into_iter()
            .filter(|f| f.name() != CPU_SECONDS)
            .collect();
        families.extend(self.cpu_seconds.collect());
        families
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_seconds_are_fractional_and_grow_with_work() {
        let metrics = ProcessMetrics::for_self();
        let cpu = |m: &ProcessMetrics| -> f64 {
            let families = m.collect();
            let family = families
                .iter()
                .find(|f| f.name() == CPU_SECONDS)
                .expect("the CPU family");
            assert_eq!(
                family.get_field_type(),
                prometheus::proto::MetricType::COUNTER
            );
            family.get_metric()[0].get_counter().get_value()
        };
        let first = cpu(&metrics);
        // Busy until the process has used 20 ms more CPU (however loaded the machine).
        let target = cpu_time_us().expect("getrusage") + 20_000;
        let mut x = 0u64;
        while cpu_time_us().expect("getrusage") < target {
            for _ in 0..10_000 {
                x = std::hint::black_box(x.wrapping_mul(31).wrapping_add(7));
            }
        }
        let second = cpu(&metrics);
        assert!(second - first >= 0.02, "{first} → {second}");
        assert!(second.fract() != 0.0, "whole seconds: {second}");
        // The other process figures are still served.
        let names: Vec<String> = metrics
            .collect()
            .iter()
            .map(|f| f.name().to_string())
            .collect();
        assert!(
            names.iter().any(|n| n == "process_resident_memory_bytes"),
            "{names:?}"
        );
    }
}
