//! `svc trace <trace-id>`: every log line of one trace, from the JSON log files of all
//! instances, printed in time order as a tree of calls.
//!
//! The log files are the ones `log_file` / `--log-file` writes (`svc dev` puts one per
//! instance in `<data-dir>/logs/`); files gathered from several hosts work too, in any
//! subdirectories, as do `journalctl -o cat` dumps of JSON stderr. The id is a trace id
//! (what `x-request-id` echoes when the client sent none), a whole `traceparent`, or a
//! client's own request id, which is looked up to its trace first.

mod logs;
mod tree;

use std::collections::BTreeSet;
use std::process::ExitCode;

use super::{fail, EXIT_FAILURE, EXIT_USAGE};
use crate::cli::TraceArgs;
use logs::LogLine;
use svc_platform::trace_context::{self, TraceContext};

/// What the argument names.
#[derive(Debug, PartialEq, Eq)]
enum Wanted {
    Trace(String),
    Request(String),
}

fn wanted(arg: &str) -> Result<Wanted, String> {
    let arg = arg.trim();
    if let Some(ctx) = TraceContext::parse_traceparent(arg) {
        return Ok(Wanted::Trace(ctx.trace_id_hex()));
    }
    let lower = arg.to_ascii_lowercase();
    if lower.len() == 32 && lower.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Ok(Wanted::Trace(lower));
    }
    trace_context::sanitize_request_id(arg)
        .map(Wanted::Request)
        .ok_or_else(|| {
            format!("`{arg}`: expected a trace id (32 hex digits), a traceparent or a request id")
        })
}

pub fn run(args: TraceArgs) -> ExitCode {
    let TraceArgs { id, logs, flat } = args;
    let wanted = match wanted(&id) {
        Ok(w) => w,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let files = match logs::log_files(&logs) {
        Ok(files) if files.is_empty() => {
            return fail(
                EXIT_FAILURE,
                format!(
                    "no *.jsonl log files under {} (svc dev writes <data-dir>/logs/; svc run \
                     writes where --log-file says)",
                    logs.display()
                ),
            )
        }
        Ok(files) => files,
        Err(e) => {
            return fail(
                EXIT_FAILURE,
                format!("cannot read log directory {}: {e}", logs.display()),
            )
        }
    };
    let (trace_ids, found_by) = match &wanted {
        Wanted::Trace(t) => (BTreeSet::from([t.clone()]), "trace_id"),
        Wanted::Request(r) => {
            let (lines, _) = logs::find(&files, "request_id", &BTreeSet::from([r.clone()]));
            let ids: BTreeSet<String> = lines
                .iter()
                .filter_map(|l| l.field_str("trace_id").map(str::to_string))
                .collect();
            (ids, "request_id")
        }
    };
    let (mut lines, scan) = if trace_ids.is_empty() {
        (Vec::new(), logs::Scan::default())
    } else {
        logs::find(&files, "trace_id", &trace_ids)
    };
    if lines.is_empty() {
        return fail(
            EXIT_FAILURE,
            format!(
                "no log line with {found_by} {id} in {} file(s) under {}",
                files.len(),
                logs.display()
            ),
        );
    }
    tree::sort(&mut lines);
    println!("{}", summary(&trace_ids, &lines, scan.files.len()));
    if scan.unreadable_lines > 0 {
        println!(
            "({} line(s) mentioning it were not JSON log lines and were skipped)",
            scan.unreadable_lines
        );
    }
    println!();
    if flat {
        print!("{}", tree::render_flat(&lines));
    } else {
        print!("{}", tree::render(&lines));
    }
    ExitCode::SUCCESS
}

fn summary(trace_ids: &BTreeSet<String>, lines: &[LogLine], files: usize) -> String {
    let instances: BTreeSet<String> = lines
        .iter()
        .map(|l| format!("{}/{}", l.role, l.instance))
        .collect();
    let spans: BTreeSet<&str> = lines.iter().filter_map(|l| l.span_id.as_deref()).collect();
    let first = tree::origin_us(lines);
    let last = lines.iter().map(|l| l.at_us).max().unwrap_or(first);
    let started = lines
        .iter()
        .min_by_key(|l| l.at_us)
        .map(|l| humantime::format_rfc3339_millis(l.time()).to_string())
        .unwrap_or_default();
    format!(
        "trace {}: {} lines, {} spans, {} instances ({}), {:.1} ms from {started}; {files} files read",
        trace_ids.iter().cloned().collect::<Vec<_>>().join(", "),
        lines.len(),
        spans.len(),
        instances.len(),
        instances.into_iter().collect::<Vec<_>>().join(", "),
        last.saturating_sub(first) as f64 / 1000.0,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_argument_names_a_trace_or_a_request() {
        let t = "0af7651916cd43dd8448eb211c80319c";
        assert_eq!(wanted(t), Ok(Wanted::Trace(t.into())));
        assert_eq!(wanted(&t.to_ascii_uppercase()), Ok(Wanted::Trace(t.into())));
        assert_eq!(
            wanted(&format!("00-{t}-b7ad6b7169203331-01")),
            Ok(Wanted::Trace(t.into()))
        );
        assert_eq!(wanted("my-req-7"), Ok(Wanted::Request("my-req-7".into())));
        assert!(wanted("two words").is_err());
    }
}
