//! Where `svc dev` writes: child output and its own notes to stderr, the summary table
//! to stdout (so `svc dev > table.txt` captures just the table).
//!
//! Each line is written with one call under the stream's lock, so lines from different
//! children never interleave mid-line. Write errors are ignored: a closed terminal must
//! not take down the supervisor and leave the orderly stop undone.

use std::fmt::Display;
use std::io::Write as _;

/// One line of a child, behind its padded instance name.
pub fn echo(label: &str, line: &str) {
    let _ = writeln!(std::io::stderr().lock(), "{label} | {line}");
}

/// A message of `svc dev` itself.
pub fn note(message: impl Display) {
    let _ = writeln!(std::io::stderr().lock(), "svc dev: {message}");
}

/// The summary, on stdout.
pub fn print(text: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(text.as_bytes());
    let _ = out.flush();
}
