//! Whether the pretty log lines on stderr get colour: only for a person at a terminal
//! who did not ask for none. `NO_COLOR` set to anything but the empty string turns it
//! off, as the no-color.org convention says (clap's `--help` follows the same variable).

use std::ffi::OsStr;

/// Colour for a terminal, unless `NO_COLOR` (its value given here) is set and not empty.
pub(super) fn wanted(is_terminal: bool, no_color: Option<&OsStr>) -> bool {
    is_terminal && no_color.is_none_or(OsStr::is_empty)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn no_color_set_to_anything_turns_colour_off() {
        assert!(wanted(true, None));
        assert!(wanted(true, Some(OsStr::new(""))), "empty counts as unset");
        assert!(!wanted(true, Some(OsStr::new("1"))));
        assert!(!wanted(true, Some(OsStr::new("false"))), "any value");
        assert!(!wanted(false, None), "a pipe or a file gets none");
    }
}
