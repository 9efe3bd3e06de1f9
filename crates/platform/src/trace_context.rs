//! W3C trace context: the trace id that follows one request across every service.
//!
//! The server accepts a `traceparent` header or starts a new trace, and runs the handler
//! inside [`scope`]; the service client reads [`current`] and sends a child `traceparent`
//! on every outgoing call. Handlers never pass the context by hand, so no call can forget it.

use std::future::Future;

use rand::Rng;

pub(crate) const TRACEPARENT: &str = "traceparent";
pub(crate) const REQUEST_ID: &str = "x-request-id";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TraceContext {
    pub(crate) trace_id: u128,
    pub(crate) span_id: u64,
    /// The span this one was started from, when known: the caller's span for a request
    /// that came with a `traceparent`. Logged as `parent_span_id`, so `svc trace` can
    /// nest calls; never sent (the callee learns it from the `traceparent` itself).
    pub(crate) parent_span_id: Option<u64>,
    pub(crate) sampled: bool,
    /// The edge's request id, echoed back and passed on; defaults to the trace id.
    pub(crate) request_id: String,
}

tokio::task_local! {
    static CURRENT: TraceContext;
}

impl TraceContext {
    /// Starts a new trace.
    pub fn new_root() -> Self {
        let mut rng = rand::rng();
        let trace_id = rng.random_range(1..=u128::MAX);
        Self {
            trace_id,
            span_id: rng.random_range(1..=u64::MAX),
            parent_span_id: None,
            sampled: true,
            request_id: format!("{trace_id:032x}"),
        }
    }

    /// Parses `00-<32 hex>-<16 hex>-<2 hex>`; anything else (or all-zero ids) is `None`.
    pub fn parse_traceparent(value: &str) -> Option<Self> {
        let mut parts = value.trim().split('-');
        let (version, trace, span, flags) =
            (parts.next()?, parts.next()?, parts.next()?, parts.next()?);
        if version.len() != 2 || version == "ff" || trace.len() != 32 || span.len() != 16 {
            return None;
        }
        if flags.len() != 2 || (version == "00" && parts.next().is_some()) {
            return None;
        }
        let hex = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
        };
        if !(hex(version) && hex(trace) && hex(span) && hex(flags)) {
            return None;
        }
        let trace_id = u128::from_str_radix(trace, 16).ok()?;
        let span_id = u64::from_str_radix(span, 16).ok()?;
        let flags = u8::from_str_radix(flags, 16).ok()?;
        if trace_id == 0 || span_id == 0 {
            return None;
        }
        Some(Self {
            trace_id,
            span_id,
            parent_span_id: None,
            sampled: flags & 1 == 1,
            request_id: format!("{trace_id:032x}"),
        })
    }

    /// A new span in the same trace, started from this one: what a callee (from the
    /// caller's `traceparent`) or a saga step (from the order's) runs in.
    pub fn child(&self) -> Self {
        Self {
            span_id: rand::rng().random_range(1..=u64::MAX),
            parent_span_id: Some(self.span_id),
            ..self.clone()
        }
    }

    pub fn traceparent(&self) -> String {
        format!(
            "00-{:032x}-{:016x}-{:02x}",
            self.trace_id,
            self.span_id,
            u8::from(self.sampled)
        )
    }

    pub fn trace_id_hex(&self) -> String {
        format!("{:032x}", self.trace_id)
    }

    pub(crate) fn span_id_hex(&self) -> String {
        format!("{:016x}", self.span_id)
    }

    /// The parent span id as logged, or an empty string for a root span.
    pub(crate) fn parent_span_id_hex(&self) -> String {
        self.parent_span_id
            .map(|p| format!("{p:016x}"))
            .unwrap_or_default()
    }
}

/// Accepts a client's request id only if it is short, printable ASCII (it is logged).
pub fn sanitize_request_id(value: &str) -> Option<String> {
    let ok = !value.is_empty() && value.len() <= 128 && value.bytes().all(|b| b.is_ascii_graphic());
    ok.then(|| value.to_string())
}

/// The trace context of the request being handled, if any.
pub fn current() -> Option<TraceContext> {
    CURRENT.try_with(|c| c.clone()).ok()
}

/// Runs `fut` with `ctx` as the current trace context.
pub async fn scope<F: Future>(ctx: TraceContext, fut: F) -> F::Output {
    CURRENT.scope(ctx, fut).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_traceparent() {
        let v = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let c = TraceContext::parse_traceparent(v).unwrap();
        assert_eq!(c.traceparent(), v);
        assert!(c.sampled);
    }

    #[test]
    fn rejects_malformed() {
        for bad in [
            "",
            "00-0000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
            "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
            "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra",
        ] {
            assert!(TraceContext::parse_traceparent(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn child_keeps_trace_changes_span() {
        let root = TraceContext::new_root();
        let child = root.child();
        assert_eq!(root.trace_id, child.trace_id);
        assert_ne!(root.span_id, child.span_id);
        assert_eq!(child.parent_span_id, Some(root.span_id));
        assert_eq!(root.parent_span_id, None);
    }

    #[test]
    fn request_ids_are_sanitized() {
        assert!(sanitize_request_id("abc-123").is_some());
        assert!(sanitize_request_id("a b").is_none());
        assert!(sanitize_request_id(&"x".repeat(200)).is_none());
    }
}
