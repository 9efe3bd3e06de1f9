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

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use opentelemetry::trace::{
    SpanContext, SpanId, TraceContextExt as _, TraceFlags, TraceId, TraceState, TracerProvider as _,
};
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig as _};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, IdGenerator, RandomIdGenerator, SdkTracerProvider,
    SpanData, SpanExporter,
};
use opentelemetry_sdk::Resource;
use tracing_opentelemetry::OpenTelemetrySpanExt as _;

use crate::config::OtlpSettings;
use crate::trace_context::TraceContext;

/// How often queued spans are sent.
const EXPORT_INTERVAL: Duration = Duration::from_secs(1);

/// Whether the installed subscriber exports: [`bind`] costs nothing when it does not.
static EXPORTING: AtomicBool = AtomicBool::new(false);

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
        let batches = BatchSpanProcessor::builder(SkipQuiet(exporter))
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
        Some(parent) => {
            let flags = if ctx.sampled {
                TraceFlags::SAMPLED
            } else {
                TraceFlags::default()
            };
            Context::new().with_remote_span_context(SpanContext::new(
                TraceId::from(ctx.trace_id),
                SpanId::from(parent),
                flags,
                true,
                // The caller's vendors' entries, as the exported span's parent state.
                ctx.tracestate()
                    .and_then(|s| s.parse::<TraceState>().ok())
                    .unwrap_or_default(),
            ))
        }
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

/// See [`super::mark_quiet`].
pub(crate) fn mark_quiet(span: &tracing::Span) {
    if EXPORTING.load(Ordering::Relaxed) {
        span.set_attribute(QUIET, true);
    }
}

/// The OTLP exporter, minus the spans marked [`QUIET`].
#[derive(Debug)]
struct SkipQuiet<E>(E);

impl<E: SpanExporter> SpanExporter for SkipQuiet<E> {
    async fn export(&self, mut batch: Vec<SpanData>) -> OTelSdkResult {
        batch.retain(|span| !span.attributes.iter().any(|kv| kv.key.as_str() == QUIET));
        if batch.is_empty() {
            return Ok(());
        }
        self.0.export(batch).await
    }

    fn shutdown_with_timeout(&mut self, timeout: Duration) -> OTelSdkResult {
        self.0.shutdown_with_timeout(timeout)
    }

    fn shutdown(&mut self) -> OTelSdkResult {
        self.0.shutdown()
    }

    fn force_flush(&mut self) -> OTelSdkResult {
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
