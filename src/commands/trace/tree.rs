//! The lines of one trace as a tree of calls, in time order.
//!
//! A span is the work of one instance under one `span_id`: a request it served or a saga
//! step. A span hangs under the span named by its `parent_span_id` when that span is in
//! the logs; otherwise (the caller's span is outside them, e.g. the user's client) it is
//! a root. Inside a span, its own lines and its child spans are merged by time; a span
//! starts at its earliest line, or earlier for a request or step line, which logs how
//! long it took (`ms`) when it ends.

use std::collections::{BTreeMap, HashSet};
use std::fmt::Write as _;

use serde_json::Value;

use super::logs::LogLine;
use svc_platform::telemetry::SPAN_TARGET;

/// Fields every line has, or that the span header already says.
const SHOWN_ELSEWHERE: &[&str] = &["trace_id", "request_id"];
/// Printed first, in this order (what a request line says), then the rest by name.
const FIRST: &[&str] = &["method", "path", "status", "ms"];

struct Span<'a> {
    id: String,
    parent: Option<String>,
    who: String,
    start_us: u64,
    lines: Vec<&'a LogLine>,
    children: Vec<String>,
}

/// When the work a line reports began: a span line's `ms` is how long it took.
fn began_us(line: &LogLine) -> u64 {
    let took_ms = (line.target == SPAN_TARGET)
        .then(|| line.fields.get("ms").and_then(Value::as_f64))
        .flatten()
        .filter(|ms| ms.is_finite() && *ms >= 0.0);
    match took_ms {
        Some(ms) => line.at_us.saturating_sub((ms * 1000.0) as u64),
        None => line.at_us,
    }
}

fn who(line: &LogLine) -> String {
    format!("{}/{}", line.role, line.instance)
}

/// Sorts lines by time (then by file and position, which keeps one process's order).
pub fn sort(lines: &mut [LogLine]) {
    lines.sort_by_key(|l| (l.at_us, l.file, l.line_no));
}

fn offset(at_us: u64, origin_us: u64) -> String {
    let ms = at_us.saturating_sub(origin_us) as f64 / 1000.0;
    format!("{:>10}", format!("+{ms:.1}ms"))
}

fn describe(line: &LogLine) -> String {
    let mut out = format!("{:<5} {}", line.level, line.msg);
    let first = FIRST.iter().filter_map(|k| line.fields.get_key_value(*k));
    let rest = line
        .fields
        .iter()
        .filter(|(k, _)| !FIRST.contains(&k.as_str()) && !SHOWN_ELSEWHERE.contains(&k.as_str()));
    for (k, v) in first.chain(rest) {
        match v {
            Value::String(s) => {
                let _ = write!(out, " {k}={s}");
            }
            other => {
                let _ = write!(out, " {k}={other}");
            }
        }
    }
    out
}

/// Where every offset counts from: the earliest start of any line's work.
pub fn origin_us(lines: &[LogLine]) -> u64 {
    lines.iter().map(began_us).min().unwrap_or(0)
}

/// The whole trace as an indented tree. `lines` must be sorted ([`sort`]).
pub fn render(lines: &[LogLine]) -> String {
    let origin = origin_us(lines);
    let mut spans: BTreeMap<String, Span> = BTreeMap::new();
    for line in lines {
        // Lines outside any span still belong to the trace; group them per instance.
        let id = line
            .span_id
            .clone()
            .unwrap_or_else(|| format!("(no span) {}", who(line)));
        let span = spans.entry(id.clone()).or_insert_with(|| Span {
            id,
            parent: None,
            who: who(line),
            start_us: u64::MAX,
            lines: Vec::new(),
            children: Vec::new(),
        });
        span.start_us = span.start_us.min(began_us(line));
        if span.parent.is_none() {
            span.parent = line.parent_span_id.clone();
        }
        span.lines.push(line);
    }
    let mut roots = Vec::new();
    let ids: Vec<String> = spans.keys().cloned().collect();
    for id in &ids {
        let parent = spans[id]
            .parent
            .clone()
            .filter(|p| p != id && spans.contains_key(p));
        match parent {
            Some(p) => {
                if let Some(parent) = spans.get_mut(&p) {
                    parent.children.push(id.clone());
                }
            }
            None => roots.push(id.clone()),
        }
    }
    roots.sort_by_key(|id| spans[id].start_us);
    let mut out = String::new();
    let mut seen = HashSet::new();
    for root in &roots {
        render_span(&spans, root, 0, origin, &mut seen, &mut out);
    }
    // A parent cycle (not produced by svc, but logs can be edited) leaves spans unseen.
    for id in &ids {
        if !seen.contains(id) {
            render_span(&spans, id, 0, origin, &mut seen, &mut out);
        }
    }
    out
}

fn render_span(
    spans: &BTreeMap<String, Span>,
    id: &str,
    depth: usize,
    origin: u64,
    seen: &mut HashSet<String>,
    out: &mut String,
) {
    if !seen.insert(id.to_string()) {
        return;
    }
    let span = &spans[id];
    let indent = "  ".repeat(depth);
    let parent = match &span.parent {
        Some(p) if !spans.contains_key(p) => format!(" (parent {p}: not in these logs)"),
        _ => String::new(),
    };
    let _ = writeln!(
        out,
        "{}  {indent}{} span {}{parent}",
        offset(span.start_us, origin),
        span.who,
        span.id
    );
    enum Item<'a> {
        Line(&'a LogLine),
        Child(&'a str),
    }
    let mut items: Vec<(u64, Item)> = span
        .lines
        .iter()
        .map(|l| (l.at_us, Item::Line(l)))
        .chain(
            span.children
                .iter()
                .map(|c| (spans[c].start_us, Item::Child(c.as_str()))),
        )
        .collect();
    // Stable: lines keep their order within one millisecond.
    items.sort_by_key(|(at, _)| *at);
    for (at, item) in items {
        match item {
            Item::Line(line) => {
                let _ = writeln!(out, "{}  {indent}  {}", offset(at, origin), describe(line));
            }
            Item::Child(child) => render_span(spans, child, depth + 1, origin, seen, out),
        }
    }
}

/// Every line in time order, one per line, naming its instance and span.
pub fn render_flat(lines: &[LogLine]) -> String {
    let origin = origin_us(lines);
    let mut out = String::new();
    for line in lines {
        let _ = writeln!(
            out,
            "{}  {:<24} {}  [span {}]",
            offset(line.at_us, origin),
            who(line),
            describe(line),
            line.span_id.as_deref().unwrap_or("-")
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(
        at_ms: u64,
        who: &str,
        span: &str,
        parent: Option<&str>,
        msg: &str,
        ms: Option<f64>,
    ) -> LogLine {
        let (role, instance) = who.split_once('/').unwrap();
        let mut v = serde_json::json!({
            "ts": humantime::format_rfc3339_millis(
                std::time::UNIX_EPOCH + std::time::Duration::from_millis(1_700_000_000_000 + at_ms)
            ).to_string(),
            "level": "DEBUG", "role": role, "instance": instance, "target": SPAN_TARGET,
            "msg": msg, "trace_id": "t", "span_id": span,
        });
        if let Some(p) = parent {
            v["parent_span_id"] = p.into();
        }
        if let Some(ms) = ms {
            v["ms"] = ms.into();
        }
        LogLine::parse(&v.to_string(), 0, at_ms as usize).unwrap()
    }

    #[test]
    fn callees_nest_under_callers_in_time_order() {
        let mut lines = vec![
            // The gateway logs its request last, when it ends after inventory's.
            line(
                10,
                "gateway/gw-1",
                "aaaa",
                Some("client"),
                "request",
                Some(9.0),
            ),
            line(
                8,
                "inventory/inv-1",
                "bbbb",
                Some("aaaa"),
                "request",
                Some(4.0),
            ),
            line(
                7,
                "inventory/inv-1",
                "bbbb",
                Some("aaaa"),
                "product read",
                None,
            ),
        ];
        sort(&mut lines);
        let text = render(&lines);
        let rows: Vec<&str> = text.lines().collect();
        assert_eq!(rows.len(), 5, "{text}");
        assert!(
            rows[0].contains("gateway/gw-1 span aaaa (parent client: not in these logs)"),
            "{text}"
        );
        assert!(rows[0].trim_start().starts_with("+0.0ms"), "{text}");
        assert!(
            rows[1].contains("  inventory/inv-1 span bbbb") && rows[1].contains("+3.0ms"),
            "{text}"
        );
        assert!(rows[2].contains("product read"), "{text}");
        assert!(
            rows[3].contains("DEBUG request") && rows[3].contains("+7.0ms"),
            "{text}"
        );
        assert!(
            rows[4].contains("DEBUG request") && rows[4].contains("+9.0ms"),
            "{text}"
        );
        let indent = |r: &str| {
            r.split("ms  ")
                .nth(1)
                .map(|s| s.len() - s.trim_start().len())
        };
        assert!(indent(rows[1]) > indent(rows[0]), "{text}");

        let flat = render_flat(&lines);
        let order: Vec<&str> = flat
            .lines()
            .map(|l| if l.contains("gateway") { "g" } else { "i" })
            .collect();
        assert_eq!(order, ["i", "i", "g"], "{flat}");
    }

    #[test]
    fn a_parent_cycle_still_prints_every_line() {
        let mut lines = vec![
            line(1, "orders/o", "x", Some("y"), "a", None),
            line(2, "orders/o", "y", Some("x"), "b", None),
        ];
        sort(&mut lines);
        let text = render(&lines);
        assert!(text.contains(" a") && text.contains(" b"), "{text}");
    }
}
