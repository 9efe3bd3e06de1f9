//! Logging: tracing to stderr, pretty for people (coloured at a terminal unless
//! `NO_COLOR`) or JSON for machines, one line per event;
//! optionally also JSON lines to a file (`log_file`), which `svc trace` reads.
//!
//! Every line carries the role and instance of the process and the fields of the spans it
//! happened in (so the `trace_id`, `span_id` and `parent_span_id` of the request),
//! whichever thread or task logged it. The span fields are kept by a tiny layer
//! ([`SpanFields`]) so both formats can print them as real key/values rather than
//! re-parsing formatted text.
//!
//! The file keeps one more kind of line than stderr by default: the debug lines of
//! [`SPAN_TARGET`], one per request served and per saga step ([`UnitOfWork`], the one
//! way such a span is opened and its end line written). They are what lets
//! `svc trace` draw every call of a trace, also the successful ones, while a terminal
//! stays quiet. Renewals, watches, probes and scrapes log at trace level, so they fill
//! neither.
//!
//! With `otlp.enabled`, the same spans also go to an OpenTelemetry collector ([`otlp`]),
//! with the ids of the log lines: [`bind_trace`] ties a span to its [`TraceContext`].

use std::fmt::Write as _;
use std::fs::File;
use std::io::IsTerminal;
use std::path::Path;
use std::sync::Arc;

use serde_json::Value;
use tracing::{
    field::{Field, Visit},
    Event, Subscriber,
};
use tracing_subscriber::{
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields, MakeWriter},
    layer::{Context, SubscriberExt},
    registry::LookupSpan,
    util::SubscriberInitExt,
    EnvFilter, Layer,
};

use super::config::{LogFormat, OtlpSettings};
use super::trace_context::TraceContext;

mod colour;
pub mod otlp;
mod unit_of_work;

pub use otlp::SpanKind;
/// For [`unit_of_work!`](crate::unit_of_work) in crates that do not name `tracing`.
#[doc(hidden)]
pub use tracing as __tracing;
pub use unit_of_work::{UnitOfWork, Verdict};

/// Target of the one debug line per unit of work (request served, saga step) that the
/// log file always keeps. `RUST_LOG=svc::span=debug` shows them on stderr too.
pub const SPAN_TARGET: &str = "svc::span";

const DEFAULT_FILTER: &str =
    "info,actix_server=warn,actix_web=warn,h2=warn,hyper=warn,reqwest=warn";

/// The log file could not be opened for appending.
#[derive(Debug, thiserror::Error)]
#[error("cannot open log file {path}: {source}")]
pub struct LogFileError {
    path: String,
    #[source]
    source: std::io::Error,
}

/// Opens (creating it 0600 and its directory 0700) the file JSON lines are appended to.
pub fn open_log_file(path: &Path) -> Result<File, LogFileError> {
    let fail = |source| LogFileError {
        path: path.display().to_string(),
        source,
    };
    // Log lines carry ids and traces of requests: owner-only, like the state files.
    crate::private_files::open_append(path).map_err(fail)
}

/// What [`init`] started that must be stopped at exit: the span export, if enabled.
#[must_use = "call shutdown at exit, or queued spans are lost"]
pub struct Telemetry {
    export: Option<otlp::Export>,
}

impl Telemetry {
    /// Sends the spans still queued for export (if any) and stops exporting.
    pub fn shutdown(self) {
        if let Some(export) = self.export {
            export.shutdown();
        }
    }
}

/// Installs the global subscriber: stderr in `format`, JSON lines to `log_file` if
/// given, and spans to an OTLP collector if `otlp.enabled`. `RUST_LOG` refines the
/// default `info` filter of all.
pub fn init(
    format: LogFormat,
    role: &str,
    instance: &str,
    log_file: Option<File>,
    otlp: &OtlpSettings,
) -> Result<Telemetry, otlp::ExportError> {
    let export = otlp
        .enabled
        .then(|| otlp::Export::new(otlp, role, instance))
        .transpose()?;
    // A second init (tests calling twice) is harmless: keep the first subscriber.
    let installed = subscriber(format, role, instance, log_file, std::io::stderr)
        .with(export.as_ref().map(otlp_layer))
        .try_init()
        .is_ok();
    if let Some(export) = export.as_ref().filter(|_| installed) {
        export.set_active(true);
    }
    Ok(Telemetry { export })
}

/// The layer that hands finished spans to `export`'s batch processor.
pub fn otlp_layer<S>(export: &otlp::Export) -> impl Layer<S>
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(export.tracer())
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
}

/// Gives `span` (just created, not yet entered) the ids of `ctx` in the OTLP export:
/// its trace id, its span id, and `parent_span_id` as its remote parent, the same ids
/// its log lines carry. Nothing happens (an atomic load) when export is off.
fn bind_trace(span: &tracing::Span, ctx: &TraceContext) {
    otlp::bind(span, ctx);
}

/// Keeps `span` out of the OTLP export: the span of a [`quiet`](super::server::quiet)
/// answer, left out as the log file leaves it out.
fn mark_quiet(span: &tracing::Span) {
    otlp::mark_quiet(span);
}

/// The subscriber [`init`] installs, with what it calls stderr as a parameter, so the
/// cost of logging can be measured without a terminal (`tests/observe_cost.rs`).
pub fn subscriber<W>(
    format: LogFormat,
    role: &str,
    instance: &str,
    log_file: Option<File>,
    stderr: W,
) -> impl Subscriber + for<'a> LookupSpan<'a> + Send + Sync + 'static
where
    W: for<'w> MakeWriter<'w> + Send + Sync + 'static,
{
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|d| EnvFilter::try_new(d).is_ok())
        .unwrap_or_else(|| DEFAULT_FILTER.to_string());
    let file_directives = if directives.contains(SPAN_TARGET) {
        directives.clone()
    } else {
        format!("{directives},{SPAN_TARGET}=debug")
    };
    let line = |json: bool, color: bool| LineFormat {
        json,
        color,
        role: role.to_string(),
        instance: instance.to_string(),
    };
    let stderr = tracing_subscriber::fmt::layer()
        .fmt_fields(NoSpanText)
        .with_writer(stderr)
        .event_format(line(
            format == LogFormat::Json,
            format == LogFormat::Pretty
                && colour::wanted(
                    std::io::stderr().is_terminal(),
                    std::env::var_os("NO_COLOR").as_deref(),
                ),
        ))
        .with_filter(EnvFilter::new(&directives));
    // Whole lines through one `write` each on an O_APPEND file: lines never interleave,
    // and a crash loses nothing that was logged (no buffer in between).
    let file = log_file.map(|f| {
        tracing_subscriber::fmt::layer()
            .fmt_fields(NoSpanText)
            .with_writer(Arc::new(f))
            .event_format(line(true, false))
    });
    // The outer filter admits what either output wants; stderr narrows it again.
    let outer = if file.is_some() {
        file_directives
    } else {
        directives
    };
    tracing_subscriber::registry()
        .with(EnvFilter::new(outer))
        .with(SpanFields)
        .with(stderr)
        .with(file)
}

/// The fields of a span (stored in its extensions) or of an event, by their static
/// names, in the order first recorded; recording a name again replaces its value. A
/// few entries each: a list costs less than a map and its keys need no allocation.
#[derive(Default)]
struct FieldMap(Vec<(&'static str, Value)>);

impl FieldMap {
    fn insert(&mut self, name: &'static str, value: Value) {
        match self.0.iter_mut().find(|(k, _)| *k == name) {
            Some(slot) => slot.1 = value,
            None => self.0.push((name, value)),
        }
    }

    fn take(&mut self, name: &str) -> Option<Value> {
        let at = self.0.iter().position(|(k, _)| *k == name)?;
        Some(self.0.remove(at).1)
    }
}

impl Visit for FieldMap {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.insert(field.name(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.insert(field.name(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.insert(field.name(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.insert(field.name(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.insert(field.name(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.insert(field.name(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.insert(field.name(), Value::from(format!("{value:?}")));
    }
}

/// One value of a log line: text, or a recorded JSON value.
#[derive(Clone, Copy)]
enum LineValue<'a> {
    Text(&'a str),
    Json(&'a Value),
}

impl LineValue<'_> {
    /// As JSON (a string quoted and escaped).
    fn write_json(self, out: &mut Vec<u8>) {
        // Writing into a Vec cannot fail.
        let _ = match self {
            LineValue::Text(s) => serde_json::to_writer(&mut *out, s),
            LineValue::Json(v) => serde_json::to_writer(&mut *out, v),
        };
    }
}

impl std::fmt::Display for LineValue<'_> {
    /// As the pretty format shows it: a string bare, anything else as JSON.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            LineValue::Text(s) => f.write_str(s),
            LineValue::Json(Value::String(s)) => f.write_str(s),
            LineValue::Json(other) => write!(f, "{other}"),
        }
    }
}

/// Adds `key` unless the line already has it (the first source of a key wins).
fn add_field<'a>(line: &mut Vec<(&'a str, LineValue<'a>)>, key: &'a str, value: LineValue<'a>) {
    if !line.iter().any(|(k, _)| *k == key) {
        line.push((key, value));
    }
}

/// What the fmt layers keep as a span's formatted text: nothing. [`LineFormat`] prints
/// span fields from [`SpanFields`]' lists, so the text each fmt layer would otherwise
/// render for every span (and every record) is never read.
struct NoSpanText;

impl<'w> FormatFields<'w> for NoSpanText {
    fn format_fields<R: tracing_subscriber::field::RecordFields>(
        &self,
        _writer: Writer<'w>,
        _fields: R,
    ) -> std::fmt::Result {
        Ok(())
    }
}

struct SpanFields;

impl<S> Layer<S> for SpanFields
where
    S: Subscriber + for<'a> LookupSpan<'a>,
{
    fn on_new_span(
        &self,
        attrs: &tracing::span::Attributes<'_>,
        id: &tracing::span::Id,
        ctx: Context<'_, S>,
    ) {
        let mut fields = FieldMap::default();
        attrs.record(&mut fields);
        if let Some(span) = ctx.span(id) {
            span.extensions_mut().insert(fields);
        }
    }

    fn on_record(
        &self,
        id: &tracing::span::Id,
        values: &tracing::span::Record<'_>,
        ctx: Context<'_, S>,
    ) {
        if let Some(span) = ctx.span(id) {
            if let Some(fields) = span.extensions_mut().get_mut::<FieldMap>() {
                values.record(fields);
            }
        }
    }
}

struct LineFormat {
    json: bool,
    color: bool,
    role: String,
    instance: String,
}

impl<S, N> FormatEvent<S, N> for LineFormat
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut event_fields = FieldMap::default();
        event.record(&mut event_fields);
        let message = match event_fields.take("message") {
            Some(Value::String(s)) => s,
            Some(other) => other.to_string(),
            None => String::new(),
        };
        // Span fields, borrowed from the spans (no copy), outermost first, so inner
        // spans override outer ones; then sorted by key, as they always were printed.
        let spans: Vec<_> = ctx
            .event_scope()
            .map(|scope| scope.from_root().collect())
            .unwrap_or_default();
        let extensions: Vec<_> = spans.iter().map(|span| span.extensions()).collect();
        let mut span_fields: Vec<(&str, &Value)> = Vec::new();
        for fields in extensions.iter().filter_map(|e| e.get::<FieldMap>()) {
            for (k, v) in &fields.0 {
                match span_fields.iter_mut().find(|(key, _)| key == k) {
                    Some(slot) => slot.1 = v,
                    None => span_fields.push((k, v)),
                }
            }
        }
        span_fields.sort_unstable_by_key(|(k, _)| *k);
        let mut own_fields: Vec<(&str, &Value)> =
            event_fields.0.iter().map(|(k, v)| (*k, v)).collect();
        own_fields.sort_unstable_by_key(|(k, _)| *k);
        let meta = event.metadata();
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now()).to_string();
        if self.json {
            // Every key once (the line's own first, then span fields, then the event's),
            // in key order: the object serde_json's sorted map used to print, written
            // straight into one buffer.
            let mut line: Vec<(&str, LineValue<'_>)> = vec![
                ("ts", LineValue::Text(&ts)),
                ("level", LineValue::Text(meta.level().as_str())),
                ("role", LineValue::Text(&self.role)),
                ("instance", LineValue::Text(&self.instance)),
                ("target", LineValue::Text(meta.target())),
                ("msg", LineValue::Text(&message)),
            ];
            for (k, v) in span_fields.iter().chain(&own_fields) {
                add_field(&mut line, k, LineValue::Json(v));
            }
            line.sort_unstable_by_key(|(k, _)| *k);
            let mut out = Vec::with_capacity(256);
            out.push(b'{');
            for (i, (k, v)) in line.iter().enumerate() {
                if i > 0 {
                    out.push(b',');
                }
                LineValue::Text(k).write_json(&mut out);
                out.push(b':');
                v.write_json(&mut out);
            }
            out.extend_from_slice(b"}\n");
            // serde_json writes UTF-8 only.
            writer.write_str(std::str::from_utf8(&out).map_err(|_| std::fmt::Error)?)
        } else {
            let level = meta.level().as_str();
            let level = if self.color {
                let code = match *meta.level() {
                    tracing::Level::ERROR => "31",
                    tracing::Level::WARN => "33",
                    tracing::Level::INFO => "32",
                    _ => "2",
                };
                format!("\x1b[{code}m{level:>5}\x1b[0m")
            } else {
                format!("{level:>5}")
            };
            let mut line = format!(
                "{ts} {level} {}/{} {}: {message}",
                self.role,
                self.instance,
                meta.target()
            );
            for (k, v) in own_fields.iter().chain(&span_fields) {
                write!(line, " {k}={}", LineValue::Json(v))?;
            }
            writeln!(writer, "{line}")
        }
    }
}
