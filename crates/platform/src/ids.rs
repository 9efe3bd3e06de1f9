//! Identifiers that travel in URLs and name files and rows: one rule for all of them.
//!
//! Instance ids, order ids and SKUs are 1 to 64 characters of `A-Z a-z 0-9 - _ .`, so
//! they can be put into a path or a file name without escaping and cannot smuggle a `/`.

/// Checks `value` against the id alphabet; the error names `field`.
pub fn check_id(field: &str, value: &str) -> Result<(), String> {
    let ok = !value.is_empty()
        && value.len() <= 64
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{field}: `{value}` must be 1 to 64 characters of A-Z a-z 0-9 - _ ."
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::check_id;

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
}
