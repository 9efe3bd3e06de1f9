//! One instance's unit of work (a request served, a saga step): its span and its end line.
//!
//! `svc trace` builds its call tree from these alone, so every unit of work must look the
//! same in the logs: a span carrying `trace_id`, `span_id` and, when the work was started
//! from another span, `parent_span_id` (absent for a root: an empty id would name no
//! span); and one line to [`SPAN_TARGET`](super::SPAN_TARGET) when it ends, with `ms`, at the level its
//! [`Verdict`] says. [`unit_of_work!`](crate::unit_of_work) opens one (a macro, so the
//! caller keeps its own span name and fields), [`end_unit_of_work!`](crate::end_unit_of_work)
//! logs the end line; both put the ids and the level rules here, once.
//!
//! Which span is the parent is the caller's [`TraceContext`]: a request continues the
//! caller's `traceparent` (`parent.child()`), a saga step the traceparent stored with its
//! order, i.e. the span of the request that created the order.

use std::future::Future;
use std::time::{Duration, Instant};

use tracing::instrument::Instrumented;
use tracing::{Instrument, Span};

use crate::trace_context::TraceContext;

/// How a unit of work ended, which decides the level of its end line: failures at
/// warn, refusals at info (both show on a terminal), successes at debug (kept by the
/// log file for `svc trace`), routine plumbing at trace (neither: it is most of the
/// volume and counted in the metrics anyway).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// It could not be done (a 5xx answer, a step to retry): warn, "<name> failed".
    Failed,
    /// It was refused as asked (a 4xx answer): info, "<name> refused".
    Refused,
    /// Done: debug, "<name>".
    Done,
    /// Done, and routine ([`crate::server::quiet`]): trace, "<name>"; not exported.
    Routine,
}

impl Verdict {
    /// The verdict on a request answered with `status`; `quiet` if the answer was marked
    /// [`crate::server::quiet`].
    pub(crate) fn of_status(status: u16, quiet: bool) -> Verdict {
        match status {
            500.. => Verdict::Failed,
            400..=499 => Verdict::Refused,
            _ if quiet => Verdict::Routine,
            _ => Verdict::Done,
        }
    }
}

/// An open unit of work: its span, and when it started.
#[derive(Debug)]
pub struct UnitOfWork {
    span: Span,
    started: Instant,
}

impl UnitOfWork {
    /// Gives `span` the ids of `ctx` and starts the clock. Use
    /// [`unit_of_work!`](crate::unit_of_work), which declares the id fields this fills.
    pub fn start(ctx: &TraceContext, span: Span) -> UnitOfWork {
        // Recorded as strings: `display` would format each id a second time.
        span.record("trace_id", ctx.trace_id_hex().as_str());
        span.record("span_id", ctx.span_id_hex().as_str());
        if ctx.parent_span_id.is_some() {
            span.record("parent_span_id", ctx.parent_span_id_hex().as_str());
        }
        super::bind_trace(&span, ctx);
        UnitOfWork {
            span,
            started: Instant::now(),
        }
    }

    pub fn span(&self) -> &Span {
        &self.span
    }

    /// Runs `fut` inside the span, so its lines carry the ids.
    pub fn instrument<F: Future>(&self, fut: F) -> Instrumented<F> {
        fut.instrument(self.span.clone())
    }

    pub fn elapsed(&self) -> Duration {
        self.started.elapsed()
    }

    /// Milliseconds since the start, to the microsecond: the end line's `ms`.
    pub fn ms(&self) -> f64 {
        (self.elapsed().as_secs_f64() * 1e6).round() / 1e3
    }

    /// What the work is, for the OTLP export (its span kind); only there, not in the logs.
    /// A unit of work given no kind is exported as internal.
    pub fn set_kind(&self, kind: super::SpanKind) {
        super::otlp::set_kind(&self.span, kind);
    }

    /// Attributes of the exported span only (semantic conventions), not fields of its
    /// log lines; `attributes` runs only while exporting.
    pub(crate) fn set_export_attributes(
        &self,
        attributes: impl FnOnce() -> Vec<(&'static str, opentelemetry::Value)>,
    ) {
        super::otlp::set_attributes(&self.span, attributes);
    }

    /// Keeps a [`Verdict::Routine`] span out of the OTLP export, as the log file
    /// leaves it out. Called by [`end_unit_of_work!`](crate::end_unit_of_work).
    #[doc(hidden)]
    pub fn mark_routine(&self) {
        super::mark_quiet(&self.span);
    }
}

/// Opens a [`UnitOfWork`]: `unit_of_work!(&ctx, "request", request_id = %id)`. The span
/// is an info span named `$name`, with the caller's fields plus `trace_id`, `span_id`
/// and `parent_span_id` from `ctx`.
#[macro_export]
macro_rules! unit_of_work {
    ($ctx:expr, $name:literal $(, $($field:tt)+)?) => {
        $crate::telemetry::UnitOfWork::start(
            $ctx,
            $crate::telemetry::__tracing::info_span!(
                $name,
                trace_id = $crate::telemetry::__tracing::field::Empty,
                span_id = $crate::telemetry::__tracing::field::Empty,
                parent_span_id = $crate::telemetry::__tracing::field::Empty,
                $($($field)+)?
            ),
        )
    };
}

/// Logs the end line of a [`UnitOfWork`] to [`SPAN_TARGET`](crate::telemetry::SPAN_TARGET),
/// inside its span, with the caller's fields and `ms`, at the level of the [`Verdict`]:
/// `end_unit_of_work!(work, verdict, "request", %method, status)`.
#[macro_export]
macro_rules! end_unit_of_work {
    ($work:expr, $verdict:expr, $name:literal $(, $($field:tt)+)?) => {{
        let work: &$crate::telemetry::UnitOfWork = &$work;
        let ms = work.ms();
        let verdict: $crate::telemetry::Verdict = $verdict;
        work.span().in_scope(|| match verdict {
            $crate::telemetry::Verdict::Failed => $crate::telemetry::__tracing::warn!(
                target: $crate::telemetry::SPAN_TARGET, $($($field)+,)? ms, concat!($name, " failed")
            ),
            $crate::telemetry::Verdict::Refused => $crate::telemetry::__tracing::info!(
                target: $crate::telemetry::SPAN_TARGET, $($($field)+,)? ms, concat!($name, " refused")
            ),
            $crate::telemetry::Verdict::Done => $crate::telemetry::__tracing::debug!(
                target: $crate::telemetry::SPAN_TARGET, $($($field)+,)? ms, $name
            ),
            $crate::telemetry::Verdict::Routine => {
                work.mark_routine();
                $crate::telemetry::__tracing::trace!(
                    target: $crate::telemetry::SPAN_TARGET, $($($field)+,)? ms, $name
                )
            }
        });
    }};
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::LogFormat;
    use crate::telemetry::SPAN_TARGET;
    use serde_json::Value;

    /// Runs `work` under the platform's own subscriber and returns the JSON lines of its
    /// log file (which keeps the `svc::span` debug lines).
    fn capture(work: impl FnOnce()) -> Vec<Value> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unit.jsonl");
        let file = super::super::open_log_file(&path).unwrap();
        let subscriber =
            super::super::subscriber(LogFormat::Json, "orders", "orders-0", Some(file), || {
                std::io::sink()
            });
        tracing::subscriber::with_default(subscriber, work);
        std::fs::read_to_string(&path)
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    fn find<'a>(lines: &'a [Value], msg: &str) -> &'a Value {
        let found = lines.iter().find(|l| l["msg"] == msg);
        found.unwrap_or_else(|| panic!("no `{msg}` in {lines:?}"))
    }

    #[test]
    fn a_child_span_logs_its_ids_and_its_parent_on_every_line() {
        let parent = TraceContext::new_root();
        let ctx = parent.child();
        let lines = capture(|| {
            let work = crate::unit_of_work!(&ctx, "saga", order_id = "ord-0-a");
            work.span().in_scope(|| tracing::info!("inside"));
            crate::end_unit_of_work!(work, Verdict::Done, "saga step", ok = true);
        });
        let (inside, end) = (find(&lines, "inside"), find(&lines, "saga step"));
        for line in [inside, end] {
            assert_eq!(line["trace_id"], ctx.trace_id_hex(), "{line}");
            assert_eq!(line["span_id"], ctx.span_id_hex(), "{line}");
            assert_eq!(line["parent_span_id"], parent.span_id_hex(), "{line}");
            assert_eq!(line["order_id"], "ord-0-a", "{line}");
        }
        assert_eq!(end["target"], SPAN_TARGET);
        assert_eq!(end["level"], "DEBUG");
        assert_eq!(end["ok"], true);
        assert!(end["ms"].as_f64().is_some_and(|ms| ms >= 0.0), "{end}");
    }

    #[test]
    fn a_root_span_names_no_parent() {
        let ctx = TraceContext::new_root();
        let lines = capture(|| {
            let work = crate::unit_of_work!(&ctx, "request");
            crate::end_unit_of_work!(work, Verdict::Done, "request", status = 200u16);
        });
        let end = find(&lines, "request");
        assert_eq!(end["span_id"], ctx.span_id_hex());
        assert!(end.get("parent_span_id").is_none(), "{end}");
    }

    #[test]
    fn the_verdict_sets_level_and_message() {
        let ctx = TraceContext::new_root();
        let lines = capture(|| {
            for verdict in [Verdict::Failed, Verdict::Refused, Verdict::Routine] {
                let work = crate::unit_of_work!(&ctx, "request");
                crate::end_unit_of_work!(work, verdict, "request");
            }
        });
        assert_eq!(find(&lines, "request failed")["level"], "WARN");
        assert_eq!(find(&lines, "request refused")["level"], "INFO");
        // Routine work is below what the log file keeps.
        assert_eq!(lines.len(), 2, "{lines:?}");
    }

    #[test]
    fn verdicts_of_statuses() {
        assert_eq!(Verdict::of_status(503, true), Verdict::Failed);
        assert_eq!(Verdict::of_status(500, false), Verdict::Failed);
        assert_eq!(Verdict::of_status(404, true), Verdict::Refused);
        assert_eq!(Verdict::of_status(200, false), Verdict::Done);
        assert_eq!(Verdict::of_status(204, true), Verdict::Routine);
    }
}
