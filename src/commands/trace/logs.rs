//! Reading JSON log files: every `*.jsonl` under a directory, the lines of one trace.
//!
//! Files are scanned line by line and a line is parsed only if its raw text contains the
//! id, so a day of logs is read at disk speed. Lines that are not JSON objects (a
//! `journalctl -o cat` dump can contain some) are skipped and counted, never fatal.

use std::collections::BTreeSet;
use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{Map, Value};

/// One log line of the trace, with the fields the tree needs pulled out.
#[derive(Debug, Clone)]
pub struct LogLine {
    /// Microseconds since the Unix epoch (log lines carry milliseconds).
    pub at_us: u64,
    pub level: String,
    pub role: String,
    pub instance: String,
    pub target: String,
    pub msg: String,
    pub span_id: Option<String>,
    pub parent_span_id: Option<String>,
    /// Every other field, for printing.
    pub fields: Map<String, Value>,
    /// Where it came from, to keep a stable order between lines of the same millisecond.
    pub file: usize,
    pub line_no: usize,
}

impl LogLine {
    /// Parses one JSON log line; `None` if it is not one of ours (no `ts`).
    pub fn parse(text: &str, file: usize, line_no: usize) -> Option<LogLine> {
        let Value::Object(mut map) = serde_json::from_str::<Value>(text).ok()? else {
            return None;
        };
        let mut take = |key: &str| match map.remove(key) {
            Some(Value::String(s)) => Some(s),
            Some(other) => Some(other.to_string()),
            None => None,
        };
        let ts = take("ts")?;
        let at = humantime::parse_rfc3339_weak(&ts).ok()?;
        let at_us = at
            .duration_since(UNIX_EPOCH)
            .unwrap_or(Duration::ZERO)
            .as_micros() as u64;
        Some(LogLine {
            at_us,
            level: take("level").unwrap_or_default(),
            role: take("role").unwrap_or_default(),
            instance: take("instance").unwrap_or_default(),
            target: take("target").unwrap_or_default(),
            msg: take("msg").unwrap_or_default(),
            span_id: take("span_id").filter(|s| !s.is_empty()),
            parent_span_id: take("parent_span_id").filter(|s| !s.is_empty()),
            fields: map,
            file,
            line_no,
        })
    }

    pub fn field_str(&self, key: &str) -> Option<&str> {
        self.fields.get(key).and_then(Value::as_str)
    }

    pub fn time(&self) -> SystemTime {
        UNIX_EPOCH + Duration::from_micros(self.at_us)
    }
}

/// What a search read, for the summary and for "nothing found" messages.
#[derive(Debug, Default)]
pub struct Scan {
    pub files: Vec<PathBuf>,
    pub lines_read: usize,
    pub unreadable_lines: usize,
}

/// Every `*.jsonl` file under `dir` (recursively, so per-host subdirectories work), sorted.
pub fn log_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_path_buf()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "jsonl") {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// The lines of `files` whose `field` is one of `ids`.
pub fn find(files: &[PathBuf], field: &str, ids: &BTreeSet<String>) -> (Vec<LogLine>, Scan) {
    let mut scan = Scan {
        files: files.to_vec(),
        ..Scan::default()
    };
    let mut found = Vec::new();
    for (n, path) in files.iter().enumerate() {
        let Ok(file) = File::open(path) else {
            continue;
        };
        for (line_no, text) in BufReader::new(file).lines().enumerate() {
            // A line cut short by a crash or a binary glitch: skip it, keep reading.
            let Ok(text) = text else {
                scan.unreadable_lines += 1;
                continue;
            };
            scan.lines_read += 1;
            if !ids.iter().any(|id| text.contains(id.as_str())) {
                continue;
            }
            match LogLine::parse(&text, n, line_no) {
                Some(line) => {
                    if line.field_str(field).is_some_and(|v| ids.contains(v)) {
                        found.push(line);
                    }
                }
                None => scan.unreadable_lines += 1,
            }
        }
    }
    (found, scan)
}

#[cfg(test)]
mod tests {
    use super::*;

    const LINE: &str = r#"{"ts":"2026-01-02T03:04:05.678Z","level":"DEBUG","role":"gateway","instance":"gw-1","target":"svc::span","msg":"request","trace_id":"0af7651916cd43dd8448eb211c80319c","span_id":"00f067aa0ba902b7","method":"GET","status":200,"ms":1.5}"#;

    #[test]
    fn parses_a_line_of_ours() {
        let line = LogLine::parse(LINE, 0, 0).unwrap();
        assert_eq!(line.role, "gateway");
        assert_eq!(line.span_id.as_deref(), Some("00f067aa0ba902b7"));
        assert_eq!(line.parent_span_id, None);
        assert_eq!(line.at_us % 1_000_000, 678_000);
        assert_eq!(line.fields["status"], 200);
        assert!(!line.fields.contains_key("msg"));
    }

    #[test]
    fn other_lines_are_not_ours() {
        assert!(LogLine::parse("plain text", 0, 0).is_none());
        assert!(LogLine::parse("[1,2]", 0, 0).is_none());
        assert!(LogLine::parse(r#"{"msg":"no ts"}"#, 0, 0).is_none());
    }

    #[test]
    fn finds_lines_by_field_in_nested_files() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("vm2")).unwrap();
        std::fs::write(
            dir.path().join("a.jsonl"),
            format!("{LINE}\nnot json 0af7651916cd43dd8448eb211c80319c\n"),
        )
        .unwrap();
        std::fs::write(dir.path().join("vm2/b.jsonl"), LINE.replace("gw-1", "gw-2")).unwrap();
        std::fs::write(dir.path().join("ignored.txt"), LINE).unwrap();
        let files = log_files(dir.path()).unwrap();
        assert_eq!(files.len(), 2);
        let ids = BTreeSet::from(["0af7651916cd43dd8448eb211c80319c".to_string()]);
        let (lines, scan) = find(&files, "trace_id", &ids);
        assert_eq!(lines.len(), 2);
        assert_eq!(scan.unreadable_lines, 1);
        assert_eq!(scan.lines_read, 3);
    }
}
