//! W3C trace context: the trace id that follows one request across every service.
//!
//! The server accepts a `traceparent` header or starts a new trace, and runs the handler
//! inside [`scope`]; the service client reads [`current`] and sends a child `traceparent`
//! on every outgoing call. Handlers never pass the context by hand, so no call can forget it.
//!
//! A caller's W3C `tracestate` (vendors' own entries, e.g. a tracing vendor's sampling
//! decision) is kept with the context and sent on every call made for the request,
//! unchanged: svc adds no entry of its own. One that breaks the format's rules (member
//! syntax, at most 32 members, 512 characters here) is dropped whole, as the
//! specification allows, and so is one without a valid `traceparent`.

use std::future::Future;
use std::sync::Arc;

use rand::Rng;

pub const TRACEPARENT: &str = "traceparent";
pub const TRACESTATE: &str = "tracestate";
pub const REQUEST_ID: &str = "x-request-id";

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
    /// The caller's `tracestate`, passed on as it came ([`parse_tracestate`]).
    pub(crate) tracestate: Option<Arc<str>>,
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
            tracestate: None,
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
            tracestate: None,
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

    /// The request id to send on a call (`x-request-id`).
    pub fn request_id(&self) -> &str {
        &self.request_id
    }

    /// The `tracestate` to send on a call, if the request came with one.
    pub fn tracestate(&self) -> Option<&str> {
        self.tracestate.as_deref()
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

/// The `tracestate` header's values (several headers count as one list, in order), if
/// they form a valid list: `key=value` members separated by commas, at most 32, at most
/// 512 characters in all. Empty members are dropped; anything invalid drops the whole.
pub fn parse_tracestate<'a>(values: impl IntoIterator<Item = &'a str>) -> Option<Arc<str>> {
    let mut members = Vec::new();
    for value in values {
        for member in value.split(',').map(|m| m.trim_matches([' ', '\t'])) {
            if member.is_empty() {
                continue;
            }
            let (key, val) = member.split_once('=')?;
            if !(valid_key(key) && valid_value(val)) {
                return None;
            }
            members.push(member);
        }
    }
    let list = members.join(",");
    (!members.is_empty() && members.len() <= 32 && list.len() <= 512).then(|| list.into())
}

/// `lcalpha 0*255(lcalpha / DIGIT / "_" / "-" / "*" / "/")`, or a multi-tenant
/// `tenant@system` key of the same characters.
fn valid_key(key: &str) -> bool {
    let allowed = |b: u8| matches!(b, b'a'..=b'z' | b'0'..=b'9' | b'_' | b'-' | b'*' | b'/');
    let (tenant, system) = key.split_once('@').unwrap_or((key, "a"));
    let first_ok = tenant
        .bytes()
        .next()
        .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit());
    first_ok
        && key.len() <= 256
        && tenant.bytes().all(allowed)
        && !system.is_empty()
        && system.bytes().all(allowed)
}

/// 1 to 256 printable ASCII characters but `,` and `=`, not ending in a space.
fn valid_value(value: &str) -> bool {
    !value.is_empty()
        && value.len() <= 256
        && !value.ends_with(' ')
        && value
            .bytes()
            .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=')
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

    #[test]
    fn tracestate_is_kept_as_a_list_or_dropped_whole() {
        let parse = |values: &[&str]| parse_tracestate(values.iter().copied());
        assert_eq!(
            parse(&["rojo=00f067aa0ba902b7, congo=t61rcWkgMzE"]).as_deref(),
            Some("rojo=00f067aa0ba902b7,congo=t61rcWkgMzE")
        );
        assert_eq!(
            parse(&["a=1", " ,fw529a3039@dt=x "]).as_deref(),
            Some("a=1,fw529a3039@dt=x"),
            "two headers are one list; empty members go"
        );
        assert_eq!(parse(&[""]), None);
        for bad in [
            "novalue", "Upper=1", "a=b=c", "a=1,=2", "a=\u{7f}", "@x=1", "a@=1",
        ] {
            assert_eq!(parse(&[bad]), None, "{bad}");
        }
        let many: Vec<String> = (0..33).map(|i| format!("k{i}=v")).collect();
        assert_eq!(parse(&[&many.join(",")]), None, "33 members");
        let long = format!("a={}", "x".repeat(256));
        assert_eq!(parse(&[&long, &long]), None, "over 512 characters");
    }
}
