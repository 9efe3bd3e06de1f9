//! Identifiers that travel in URLs and name files and rows: one rule for all of them,
//! and the one way an id becomes part of an internal URL's path.
//!
//! Instance ids, order ids and SKUs are 1 to 64 characters of `A-Z a-z 0-9 - _ .`,
//! and neither `.` nor `..`, so they can be put into a path or a file name without
//! escaping and cannot smuggle a `/` or a dot segment (which a URL resolves, `%2E%2E`
//! included: `/v1/orders/../cancel` would call `/v1/cancel`). [`path`] builds an
//! internal path from such segments, percent-encoding each anyway and refusing a dot
//! segment, so what a path names never depends on the values in it.

/// Checks `value` against the id alphabet; the error names `field`.
pub fn check_id(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && !is_dot_segment(value)
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field}: `{value}` must be 1 to 64 characters of A-Z a-z 0-9 - _ . \
             (and not `.` or `..`)"
        ))
    }
}

/// Whether `segment` means "this" or "the parent" in a URL path.
fn is_dot_segment(segment: &str) -> bool {
    matches!(segment, "." | "..")
}

/// The path `/<segment>/<segment>...`, each segment percent-encoded (everything but
/// `A-Z a-z 0-9 - . _ ~`). An empty segment or a dot segment is refused (an id that
/// passed [`check_id`] is never one), so the path names exactly the endpoint its
/// fixed segments say.
pub fn path(segments: &[&str]) -> Result<String, String> {
    let mut out = String::new();
    for segment in segments {
        if segment.is_empty() || is_dot_segment(segment) {
            return Err(format!("`{segment}` cannot be a path segment"));
        }
        out.push('/');
        encode_into(&mut out, segment);
    }
    Ok(out)
}

/// Appends `text` percent-encoded (every byte but the unreserved ones).
pub fn encode_into(out: &mut String, text: &str) {
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_the_alphabet_only() {
        assert!(check_id("sku", "tea-1_b.2").is_ok());
        for bad in ["", "a/b", "a b", "ü", "..%2f", &"x".repeat(65)] {
            assert!(
                check_id("sku", bad).unwrap_err().starts_with("sku:"),
                "{bad}"
            );
        }
    }

    /// Issue 13: `.` and `..` passed, and became dot segments of internal URLs.
    #[test]
    fn dot_segments_are_not_ids() {
        for dots in [".", ".."] {
            assert!(check_id("id", dots).is_err(), "{dots}");
        }
        for fine in ["...", ".a", "a.", "a..b"] {
            assert!(check_id("id", fine).is_ok(), "{fine}");
        }
    }

    #[test]
    fn paths_are_built_from_encoded_segments() {
        let built = path(&["v1", "orders", "ord-0-x.1", "cancel"]);
        assert_eq!(built.as_deref(), Ok("/v1/orders/ord-0-x.1/cancel"));
        assert_eq!(path(&["v1", "a/b c"]).as_deref(), Ok("/v1/a%2Fb%20c"));
        for bad in [".", "..", ""] {
            assert!(path(&["v1", "orders", bad, "cancel"]).is_err(), "{bad:?}");
        }
    }
}
