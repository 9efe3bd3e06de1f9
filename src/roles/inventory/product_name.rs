//! What a product's name may be: 1 to 200 characters of text, trimmed, and nothing
//! that changes how the text around it is shown.
//!
//! A name reaches logs, terminals, pages and other people's screens. Control
//! characters (NUL, escape sequences that recolour or rewrite a terminal, CR/LF that
//! forge a new log line, tabs, C1 controls such as NEL), the bidirectional overrides
//! and isolates that make text read in another order than it is stored, and the line
//! and paragraph separators are refused. Letters, digits, punctuation and symbols of
//! every script stay welcome.

/// Most characters of a name.
pub const MAX_CHARS: usize = 200;

/// The name, trimmed, if it may be a product's; else what is wrong with it.
pub fn check_name(name: &str) -> Result<&str, String> {
    let name = name.trim();
    if name.is_empty() || name.chars().count() > MAX_CHARS {
        return Err(format!("name: expected 1 to {MAX_CHARS} characters"));
    }
    if let Some(c) = name.chars().find(|c| changes_display(*c)) {
        return Err(format!(
            "name: control and text-direction characters are not allowed (found U+{:04X})",
            u32::from(c)
        ));
    }
    Ok(name)
}

/// Whether `c` is a control, a bidirectional formatting or a line-breaking character.
fn changes_display(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'                 // Arabic letter mark
            | '\u{200E}' | '\u{200F}'  // left-to-right, right-to-left marks
            | '\u{202A}'..='\u{202E}'  // embeddings and overrides
            | '\u{2066}'..='\u{2069}'  // isolates
            | '\u{2028}' | '\u{2029}'  // line and paragraph separators
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Issue 13: names took NUL, escape sequences, bidi overrides and CR/LF.
    #[test]
    fn control_and_direction_characters_are_refused() {
        for bad in [
            "Green\0tea",
            "\u{1b}[31mRed tea",
            "Tea \u{202e}aet",
            "Tea \u{2067}x",
            "Tea\r\nX-Injected: 1",
            "Tea\u{85}more",
            "Tab\tTea",
            "Del\u{7f}",
            "Line\u{2028}break",
        ] {
            let refused = check_name(bad).unwrap_err();
            assert!(refused.starts_with("name:"), "{bad:?}: {refused}");
        }
    }

    #[test]
    fn text_of_any_script_is_kept_trimmed() {
        assert_eq!(check_name("  Thé vert 緑茶 ☕ "), Ok("Thé vert 緑茶 ☕"));
        assert_eq!(check_name("شاي أخضر"), Ok("شاي أخضر"));
        assert!(check_name("   ").is_err());
        assert!(check_name(&"x".repeat(MAX_CHARS + 1)).is_err());
        assert!(check_name(&"x".repeat(MAX_CHARS)).is_ok());
    }
}
