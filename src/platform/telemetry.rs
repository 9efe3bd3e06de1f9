//! Logging: tracing to stderr, pretty for people or JSON for machines, one line per event.
//!
//! Every line carries the role and instance of the process and the fields of the spans it
//! happened in (so the `trace_id` and `span_id` of the request), whichever thread or task
//! logged it. The span fields are kept by a tiny layer ([`SpanFields`]) so both formats
//! can print them as real key/values rather than re-parsing formatted text.

use std::fmt::Write as _;
use std::io::IsTerminal;

use serde_json::{Map, Value};
use tracing::{
    field::{Field, Visit},
    Event, Subscriber,
};
use tracing_subscriber::{
    fmt::{format::Writer, FmtContext, FormatEvent, FormatFields},
    layer::{Context, SubscriberExt},
    registry::LookupSpan,
    util::SubscriberInitExt,
    EnvFilter, Layer,
};

use super::config::LogFormat;

/// Installs the global subscriber. `RUST_LOG` refines the default `info` filter.
pub fn init(format: LogFormat, role: &str, instance: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        EnvFilter::new("info,actix_server=warn,actix_web=warn,h2=warn,hyper=warn,reqwest=warn")
    });
    let line = LineFormat {
        json: format == LogFormat::Json,
        color: format == LogFormat::Pretty && std::io::stderr().is_terminal(),
        role: role.to_string(),
        instance: instance.to_string(),
    };
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .event_format(line);
    // A second init (tests calling twice) is harmless: keep the first subscriber.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(SpanFields)
        .with(fmt)
        .try_init();
}

/// The fields a span was created with, stored in its extensions.
#[derive(Default)]
struct FieldMap(Map<String, Value>);

impl Visit for FieldMap {
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        self.0.insert(field.name().to_string(), Value::from(value));
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.0
            .insert(field.name().to_string(), Value::from(value.to_string()));
    }
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0
            .insert(field.name().to_string(), Value::from(format!("{value:?}")));
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
        let message = event_fields
            .0
            .remove("message")
            .map(|v| match v {
                Value::String(s) => s,
                other => other.to_string(),
            })
            .unwrap_or_default();
        // Span fields, outermost first, so inner spans override outer ones.
        let mut span_fields = Map::new();
        if let Some(scope) = ctx.event_scope() {
            for span in scope.from_root() {
                if let Some(fields) = span.extensions().get::<FieldMap>() {
                    for (k, v) in &fields.0 {
                        span_fields.insert(k.clone(), v.clone());
                    }
                }
            }
        }
        let meta = event.metadata();
        let ts = humantime::format_rfc3339_millis(std::time::SystemTime::now());
        if self.json {
            let mut line = Map::new();
            line.insert("ts".into(), Value::from(ts.to_string()));
            line.insert("level".into(), Value::from(meta.level().as_str()));
            line.insert("role".into(), Value::from(self.role.as_str()));
            line.insert("instance".into(), Value::from(self.instance.as_str()));
            line.insert("target".into(), Value::from(meta.target()));
            line.insert("msg".into(), Value::from(message));
            for (k, v) in span_fields.into_iter().chain(event_fields.0) {
                line.entry(k).or_insert(v);
            }
            writeln!(writer, "{}", Value::Object(line))
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
            for (k, v) in event_fields.0.iter().chain(span_fields.iter()) {
                match v {
                    Value::String(s) => write!(line, " {k}={s}")?,
                    other => write!(line, " {k}={other}")?,
                }
            }
            writeln!(writer, "{line}")
        }
    }
}
