//! Export of spans to an OpenTelemetry collector over OTLP/HTTP (protobuf), when
//! `otlp.enabled`: the `tracing-opentelemetry` layer turns finished spans into OTel
//! spans, a batch processor (its own thread, a blocking reqwest client) POSTs them to
//! `<endpoint>/v1/traces` every second.
//!
//! The exported ids are svc's own: [`bind`] gives a span the trace id, span id and
//! parent span id of its [`TraceContext`], the ids its log lines carry and its
//! `traceparent` passes on, so a collector links the spans of every instance exactly
//! as `svc trace` does. That takes an [`IdGenerator`] that hands out the ids [`bind`]
//! puts in a thread-local while it starts the span; other spans get random ids.
//!
//! Spans of [`quiet`](crate::server::quiet) answers (probes, scrapes, lease
//! renewals, watches) are marked by [`mark_quiet`] and never sent, as they are kept out
//! of the log file.
//!
//! What a span stands for (its OTel [`SpanKind`]) and the HTTP semantic-convention
//! attributes are set on the OTel span alone, never as `tracing` fields: those would
//! print on every log line of the span. `tracing-opentelemetry` takes a kind only from
//! an `otel.kind` field, so [`set_kind`] leaves a private attribute that the exporter
//! ([`SvcSpans`]) turns into the span's kind. A call to another role gets a span of its
//! own ([`CallSpan`], kind client), made with the SDK's tracer directly: it has no log
//! line, so it is not a `tracing` span either.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{
    Span as _, SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState,
    Tracer as _, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue, Value};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SdkTracerProvider,
    SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;
use parking_lot::RwLock;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::config::OtlpSettings;
use crate::trace_context::TraceContext;

/// How often queued spans are sent.
const EXPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Whether the installed subscriber exports: [`bind`] costs nothing when it does not.
static EXPORTING: AtomicBool = AtomicBool::new(false);

/// The tracer of [`CallSpan`]s while exporting.
static CALL_TRACER: RwLock<Option<opentelemetry_sdk::trace::Tracer>> = RwLock::new(None);

/// Whether spans are exported: what a caller checks before gathering attributes.
pub fn exporting() -> bool {
    EXPORTING.load(Ordering::Relaxed)
}

/// The exporter could not be built (an endpoint the HTTP client refuses).
#[derive(Debug, thiserror::Error)]
#[error("otlp: cannot export to {url}: {reason}")]
pub struct ExportError {
    url: String,
    reason: String,
}

/// The tracer provider of an exporting process; [`Export::shutdown`] sends what is queued.
#[derive(Clone)]
pub struct Export {
    provider: SdkTracerProvider,
    timeout: Duration,
}

impl Export {
    pub fn new(settings: &OtlpSettings, role: &str, instance: &str) -> Result<Self, ExportError> {
        let url = settings.traces_url();
        crate::tls::use_ring_by_default(); // for the exporter's HTTP client
        let exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(url.clone())
            .with_timeout(settings.export_timeout.get())
            .build()
            .map_err(|e| ExportError {
                url,
                reason: e.to_string(),
            })?;
        let batches = BatchSpanProcessor::builder(SvcSpans(exporter))
            .with_batch_config(
                BatchConfigBuilder::default()
                    .with_scheduled_delay(EXPORT_INTERVAL)
                    .build(),
            )
            .build();
        let resource = Resource::builder()
            .with_service_name(format!("svc-{role}"))
            .with_attribute(KeyValue::new("service.instance.id", instance.to_string()))
            .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
            .build();
        let provider = SdkTracerProvider::builder()
            .with_span_processor(batches)
            .with_id_generator(SvcIds)
            .with_resource(resource)
            .build();
        Ok(Self {
            provider,
            timeout: settings.export_timeout.get(),
        })
    }

    pub(crate) fn tracer(&self) -> opentelemetry_sdk::trace::Tracer {
        self.provider.tracer("svc")
    }

    /// Whether [`bind`] gives spans svc's ids: on once the layer is installed (off
    /// again only where the layer is not always in use, as in `tests/observe_cost.rs`).
    pub fn set_active(&self, on: bool) {
        *CALL_TRACER.write() = on.then(|| self.tracer());
        EXPORTING.store(on, Ordering::Relaxed);
    }

    /// Sends every span still queued, waiting at most about one export's time.
    pub fn shutdown(&self) {
        self.set_active(false);
        if let Err(e) = self
            .provider
            .shutdown_with_timeout(self.timeout + Duration::from_secs(1))
        {
            tracing::warn!(error = %e, "otlp: spans still queued at exit may be lost");
        }
    }
}

/// See [`super::bind_trace`].
pub(crate) fn bind(span: &tracing::Span, ctx: &TraceContext) {
    if !EXPORTING.load(Ordering::Relaxed) {
        return;
    }
    let parent = match ctx.parent_span_id {
        Some(parent) => remote_parent(ctx, parent),
        // A root: no parent, and the trace id comes from `SvcIds`.
        None => Context::new(),
    };
    if span.set_parent(parent).is_err() {
        return; // not exported (filtered out), or already started
    }
    NEXT_IDS.with(|ids| ids.set(Some((ctx.trace_id, ctx.span_id))));
    let _ = span.context(); // starts the OTel span now, taking its ids from `SvcIds`
    NEXT_IDS.with(|ids| ids.set(None));
}

/// The attribute [`mark_quiet`] sets; spans that have it are not exported.
const QUIET: &str = "svc.quiet";

/// The attribute [`set_kind`] sets; the exporter makes it the span's kind.
const KIND: &str = "svc.span_kind";

/// See [`super::mark_quiet`].
pub(crate) fn mark_quiet(span: &tracing::Span) {
    if exporting() {
        span.set_attribute(QUIET, true);
    }
}

/// What a unit of work is, for the collector: the OTel span kinds svc uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpanKind {
    /// A request served.
    Server,
    /// A call to another role ([`CallSpan`]).
    Client,
    /// Work of the instance's own (a saga step); the kind of a span given none.
    Internal,
    /// An event delivered to its consumer.
    Consumer,
}

impl SpanKind {
    fn label(self) -> &'static str {
        match self {
            SpanKind::Server => "server",
            SpanKind::Client => "client",
            SpanKind::Internal => "internal",
            SpanKind::Consumer => "consumer",
        }
    }

    fn of_label(label: &str) -> Option<opentelemetry::trace::SpanKind> {
        use opentelemetry::trace::SpanKind as Otel;
        Some(match label {
            "server" => Otel::Server,
            "client" => Otel::Client,
            "internal" => Otel::Internal,
            "consumer" => Otel::Consumer,
            _ => return None,
        })
    }
}

/// Gives `span` its kind in the export (see the module docs for why an attribute).
pub(crate) fn set_kind(span: &tracing::Span, kind: SpanKind) {
    if exporting() {
        span.set_attribute(KIND, kind.label());
    }
}

/// Sets attributes on the exported span of `span` only (no log line shows them);
/// `attributes` runs only while exporting.
pub(crate) fn set_attributes(
    span: &tracing::Span,
    attributes: impl FnOnce() -> Vec<(&'static str, Value)>,
) {
    if exporting() {
        for (key, value) in attributes() {
            span.set_attribute(key, value);
        }
    }
}

/// The exported span of one attempt of a call to another role: kind client, a child of
/// the span of the work it is made for, with the HTTP client attributes. The callee's
/// span names the caller's span as its parent, not this one: the parent comes from the
/// `traceparent`, which names the span the log lines carry, so `svc trace` can nest the
/// callee under the caller (a call span has no log line). Ended on drop; the default
/// is no span (export off, or a call made for no unit of work).
#[derive(Default)]
pub struct CallSpan(Option<opentelemetry_sdk::trace::Span>);

impl CallSpan {
    /// Starts the span of a `method` call to `url` made for the work of `ctx`; nothing
    /// (a lock-free check) when export is off.
    pub(crate) fn start(ctx: &TraceContext, method: &str, url: &reqwest::Url) -> CallSpan {
        if !exporting() {
            return CallSpan(None);
        }
        let Some(tracer) = CALL_TRACER.read().clone() else {
            return CallSpan(None);
        };
        let mut attributes = vec![
            KeyValue::new("http.request.method", method.to_string()),
            KeyValue::new("url.full", url.to_string()),
        ];
        if let Some(host) = url.host_str() {
            attributes.push(KeyValue::new("server.address", host.to_string()));
        }
        if let Some(port) = url.port_or_known_default() {
            attributes.push(KeyValue::new("server.port", i64::from(port)));
        }
        let span = tracer
            .span_builder("call")
            .with_kind(opentelemetry::trace::SpanKind::Client)
            .with_attributes(attributes)
            .start_with_context(&tracer, &remote_parent(ctx, ctx.span_id));
        CallSpan(Some(span))
    }

    /// The callee answered with `status`.
    pub(crate) fn answered(&mut self, status: u16) {
        if let Some(span) = &mut self.0 {
            span.set_attribute(KeyValue::new(
                "http.response.status_code",
                i64::from(status),
            ));
        }
    }

    /// No answer came: `kind` says why (`error.type`).
    pub(crate) fn failed(&mut self, kind: &'static str) {
        if let Some(span) = &mut self.0 {
            span.set_attribute(KeyValue::new("error.type", kind));
            span.set_status(opentelemetry::trace::Status::error(kind));
        }
    }
}

/// The context whose remote span is `span_id` of `ctx`'s trace.
fn remote_parent(ctx: &TraceContext, span_id: u64) -> Context {
    let flags = if ctx.sampled {
        TraceFlags::SAMPLED
    } else {
        TraceFlags::default()
    };
    Context::new().with_remote_span_context(SpanContext::new(
        TraceId::from(ctx.trace_id),
        SpanId::from(span_id),
        flags,
        true,
        // The caller's vendors' entries, as the exported span's parent state.
        ctx.tracestate()
            .and_then(|s| s.parse::<TraceState>().ok())
            .unwrap_or_default(),
    ))
}

/// The OTLP exporter, minus the spans marked [`QUIET`], with the kinds [`set_kind`] gave.
#[derive(Debug)]
struct SvcSpans<E>(E);

impl<E: SpanExporter> SpanExporter for SvcSpans<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        batch.retain(|span| !span.attributes.iter().any(|kv| kv.key.as_str() == QUIET));
        if batch.is_empty() {
            return Ok(());
        }
        for span in &mut batch {
            if let Some(at) = span
                .attributes
                .iter()
                .position(|kv| kv.key.as_str() == KIND)
            {
                let kind = span.attributes.remove(at);
                if let Some(kind) = SpanKind::of_label(kind.value.as_str().as_ref()) {
                    span.span_kind = kind;
                }
            }
        }
        self.0.export(batch).await
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn shutdown(&self) -> OTelSdkResult {
        self.0.shutdown()
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.0.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.0.set_resource(resource);
    }
}

thread_local! {
    /// The (trace id, span id) the span [`bind`] is starting must get.
    static NEXT_IDS: Cell<Option<(u128, u64)>> = const { Cell::new(None) };
}

/// Ids for the SDK: those [`bind`] asks for, else random ones.
#[derive(Debug)]
struct SvcIds;

impl IdGenerator for SvcIds {
    fn new_trace_id(&self) -> TraceId {
        match NEXT_IDS.with(Cell::get) {
            Some((trace, _)) => TraceId::from(trace),
            None => RandomIdGenerator::default().new_trace_id(),
        }
    }

    fn new_span_id(&self) -> SpanId {
        match NEXT_IDS.with(Cell::get) {
            Some((_, span)) => SpanId::from(span),
            None => RandomIdGenerator::default().new_span_id(),
        }
    }
}
