//! The one JSON line a `svc run` child prints on stdout when it is ready.
//!
//! `platform::lifecycle` writes it; this side reads only the fields `svc dev` uses and
//! ignores the rest, so adding a field there breaks nothing here. Any other stdout line
//! is ordinary output.

use serde::Deserialize;

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct ReadyLine {
    pub role: String,
    pub instance: String,
    pub address: String,
    /// Where a role with a public API (the gateway) serves it.
    #[serde(default)]
    pub public_address: Option<String>,
    pub store: String,
    /// How many registries accepted the registration; `None` for the registry itself.
    pub registered_at: Option<usize>,
    pub pid: u32,
}

impl ReadyLine {
    /// Where clients reach this instance: its public API if it has one.
    pub fn public_url(&self) -> &str {
        self.public_address.as_deref().unwrap_or(&self.address)
    }

    /// The ready line in `text`, if `text` is one.
    pub fn parse(text: &str) -> Option<ReadyLine> {
        let text = text.trim();
        // Cheap check first: most stdout lines are not JSON at all.
        if !text.starts_with('{') {
            return None;
        }
        let value: serde_json::Value = serde_json::from_str(text).ok()?;
        if value.get("event")?.as_str()? != "ready" {
            return None;
        }
        serde_json::from_value(value).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_ready_line_of_lifecycle() {
        let line = r#"{"event":"ready","role":"orders","instance":"orders-0","address":"http://127.0.0.1:41955","store":"data/dev/orders-orders-0.redb","registered_at":1,"pid":123,"new_field":true}"#;
        let ready = ReadyLine::parse(line).unwrap();
        assert_eq!(ready.instance, "orders-0");
        assert_eq!(ready.address, "http://127.0.0.1:41955");
        assert_eq!(ready.registered_at, Some(1));
    }

    #[test]
    fn registry_has_no_registration_count() {
        let line = r#"{"event":"ready","role":"registry","instance":"registry-0","address":"http://127.0.0.1:7700","store":"x.redb","registered_at":null,"pid":1}"#;
        assert_eq!(ReadyLine::parse(line).unwrap().registered_at, None);
    }

    #[test]
    fn other_lines_are_not_ready_lines() {
        assert_eq!(ReadyLine::parse("serving on 127.0.0.1:1"), None);
        assert_eq!(ReadyLine::parse(r#"{"event":"stopped"}"#), None);
        assert_eq!(ReadyLine::parse(r#"{"event":"ready"}"#), None);
    }
}
