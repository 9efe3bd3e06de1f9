//! A secret key of one purpose, kept in its own 0600 file beside the state file it
//! protects (never inside it): the payments card vault seals card numbers with one, the
//! orders idempotency fingerprints are keyed hashes under another. A copy of a state file
//! alone then reveals no card number, not even by trying every possible one.
//!
//! The key is 32 random bytes, made on first use and kept across restarts. Losing it
//! loses what it sealed (cards not yet authorized) and the fingerprints it keyed.

use std::path::{Path, PathBuf};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use ring::hmac;
use ring::rand::{SecureRandom, SystemRandom};

use crate::private_files;

const KEY_LEN: usize = 32;

#[derive(Debug, thiserror::Error)]
pub enum SecretKeyError {
    #[error("{path}: cannot {action}: {source}")]
    Io {
        path: PathBuf,
        action: &'static str,
        source: std::io::Error,
    },
    #[error("{path}: expected {KEY_LEN} bytes of key, found {found}; restore the file or remove it (which forgets what it protected)")]
    Malformed { path: PathBuf, found: usize },
    #[error("the system's random source failed")]
    Random,
}

/// A 32-byte key loaded from (or made into) its file.
pub struct SecretKey {
    bytes: [u8; KEY_LEN],
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    /// The key in `path`, made and written (0600) if the file does not exist.
    pub fn load_or_create(path: &Path) -> Result<SecretKey, SecretKeyError> {
        let io = |action| {
            move |source| SecretKeyError::Io {
                path: path.to_path_buf(),
                action,
                source,
            }
        };
        match std::fs::read(path) {
            Ok(bytes) => {
                let bytes: [u8; KEY_LEN] =
                    bytes
                        .as_slice()
                        .try_into()
                        .map_err(|_| SecretKeyError::Malformed {
                            path: path.to_path_buf(),
                            found: bytes.len(),
                        })?;
                Ok(SecretKey { bytes })
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let key = SecretKey::random()?;
                private_files::write_atomically(path, &key.bytes).map_err(io("write the key"))?;
                Ok(key)
            }
            Err(e) => Err(io("read the key")(e)),
        }
    }

    /// A fresh key that is never written anywhere (tests).
    pub fn random() -> Result<SecretKey, SecretKeyError> {
        let mut bytes = [0; KEY_LEN];
        SystemRandom::new()
            .fill(&mut bytes)
            .map_err(|_| SecretKeyError::Random)?;
        Ok(SecretKey { bytes })
    }

    /// HMAC-SHA256 of `data` under this key, as lowercase hex.
    pub fn keyed_hash(&self, data: &[u8]) -> String {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &self.bytes);
        hex(hmac::sign(&key, data).as_ref())
    }

    /// `plaintext` encrypted and authenticated (AES-256-GCM): a random nonce followed by
    /// the ciphertext and its tag.
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, SecretKeyError> {
        let mut nonce = [0u8; NONCE_LEN];
        SystemRandom::new()
            .fill(&mut nonce)
            .map_err(|_| SecretKeyError::Random)?;
        let mut sealed = plaintext.to_vec();
        self.aead()
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::empty(),
                &mut sealed,
            )
            .map_err(|_| SecretKeyError::Random)?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    /// What [`Self::seal`] sealed, or `None` if `sealed` was not sealed by this key or was
    /// altered.
    pub fn open(&self, sealed: &[u8]) -> Option<Vec<u8>> {
        if sealed.len() < NONCE_LEN {
            return None;
        }
        let (nonce, body) = sealed.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut body = body.to_vec();
        let plain = self
            .aead()
            .open_in_place(nonce, Aad::empty(), &mut body)
            .ok()?;
        Some(plain.to_vec())
    }

    fn aead(&self) -> LessSafeKey {
        // A 32-byte key is always a valid AES-256 key.
        LessSafeKey::new(UnboundKey::new(&AES_256_GCM, &self.bytes).expect("AES-256 key length"))
    }
}

fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write as _;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The file of the key named `purpose` kept beside `state_file`:
/// `orders-a.redb` → `orders-a.fingerprint.key`.
pub fn path_beside(state_file: &Path, purpose: &str) -> PathBuf {
    state_file.with_extension(format!("{purpose}.key"))
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    #[test]
    fn a_key_is_made_once_and_kept_private() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_beside(&dir.path().join("payments-a.redb"), "card");
        assert!(path.ends_with("payments-a.card.key"), "{path:?}");
        let made = SecretKey::load_or_create(&path).unwrap();
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let again = SecretKey::load_or_create(&path).unwrap();
        assert_eq!(made.keyed_hash(b"x"), again.keyed_hash(b"x"));
        let sealed = made.seal(b"4242424242424242").unwrap();
        assert_eq!(
            again.open(&sealed).as_deref(),
            Some(&b"4242424242424242"[..])
        );
    }

    #[test]
    fn sealed_data_shows_nothing_and_opens_only_with_its_key() {
        let (key, other) = (SecretKey::random().unwrap(), SecretKey::random().unwrap());
        let sealed = key.seal(b"4242424242424242").unwrap();
        assert!(!sealed.windows(4).any(|w| w == b"4242"));
        assert_ne!(
            sealed,
            key.seal(b"4242424242424242").unwrap(),
            "a fresh nonce each time"
        );
        assert_eq!(other.open(&sealed), None);
        let mut altered = sealed.clone();
        *altered.last_mut().unwrap() ^= 1;
        assert_eq!(key.open(&altered), None);
        assert_eq!(key.open(b"short"), None);
        assert_ne!(key.keyed_hash(b"a"), other.keyed_hash(b"a"));
        assert_eq!(key.keyed_hash(b"a").len(), 64);
    }

    #[test]
    fn a_damaged_key_file_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.key");
        std::fs::write(&path, b"short").unwrap();
        let err = SecretKey::load_or_create(&path).unwrap_err().to_string();
        assert!(err.contains("x.key") && err.contains("found 5"), "{err}");
    }
}
