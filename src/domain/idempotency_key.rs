//! An `Idempotency-Key`: 1 to 255 visible ASCII characters (`!` to `~`).
//!
//! The gateway parses it before it routes a create (the key decides the orders shard)
//! and orders again before it stores one; both with [`IdempotencyKey::from_header`],
//! which takes the header's raw bytes, so a key that is not valid is refused with 400,
//! never dropped: a create forwarded without its key would create (and charge) another
//! order on every retry.

/// A key that passed [`IdempotencyKey::parse`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdempotencyKey(String);

/// Why a key was refused; its message is for the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("Idempotency-Key: expected 1 to 255 visible ASCII characters")]
pub struct InvalidIdempotencyKey;

/// Longest key, in characters (= bytes).
const MAX_LEN: usize = 255;

impl IdempotencyKey {
    pub fn parse(value: &str) -> Result<IdempotencyKey, InvalidIdempotencyKey> {
        Self::from_header(value.as_bytes())
    }

    /// The key from a header value's raw bytes (which HTTP allows to be any octet).
    pub fn from_header(value: &[u8]) -> Result<IdempotencyKey, InvalidIdempotencyKey> {
        let visible = value.iter().all(u8::is_ascii_graphic);
        if value.is_empty() || value.len() > MAX_LEN || !visible {
            return Err(InvalidIdempotencyKey);
        }
        // Visible ASCII is UTF-8.
        let text = std::str::from_utf8(value).map_err(|_| InvalidIdempotencyKey)?;
        Ok(IdempotencyKey(text.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl std::ops::Deref for IdempotencyKey {
    type Target = str;

    fn deref(&self) -> &str {
        &self.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn visible_ascii_up_to_255() {
        assert!(IdempotencyKey::parse("order-42_retry.1").is_ok());
        assert!(IdempotencyKey::parse(&"k".repeat(255)).is_ok());
        for bad in ["", "two words", "tab\tkey", "clé", &"k".repeat(256)] {
            assert!(IdempotencyKey::parse(bad).is_err(), "{bad:?}");
        }
    }

    /// Issue 13: a key with one byte outside visible ASCII was dropped by the gateway.
    #[test]
    fn any_byte_outside_visible_ascii_is_refused() {
        for bad in [&b"retry-\xff-1"[..], b"caf\xc3\xa9", b"nul\0", b"del\x7f"] {
            assert_eq!(IdempotencyKey::from_header(bad), Err(InvalidIdempotencyKey));
        }
        assert_eq!(IdempotencyKey::from_header(b"k-1").unwrap().as_str(), "k-1");
    }
}
