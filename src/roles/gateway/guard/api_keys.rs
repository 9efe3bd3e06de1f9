//! API keys: how a caller proves who it is, and what the gateway knows about it.
//!
//! A key is `svck_` and 64 hex digits (32 random bytes), made by [`generate_key`] and
//! shown once to the operator; the config holds only its SHA-256 ([`hash_key`]). A
//! request presents it as `Authorization: Bearer <key>` or `X-Api-Key: <key>`; the
//! [`KeyTable`] hashes what was presented and compares the digest with every configured
//! one in constant time, so neither the key nor which entry it resembles leaks through
//! timing. Guarantees:
//! - neither a key nor a hash is ever logged, printed by `Debug`, or put in an answer:
//!   the only thing a caller of this module gets to show is the key's name;
//! - a missing key and an unknown key are told apart only for the log
//!   ([`AuthFailure`]); the caller answers both the same way.

use actix_web::http::header::{HeaderMap, AUTHORIZATION};
use rand::TryRngCore;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::roles::gateway::settings::{ApiKeySettings, Scope};

/// What every key starts with, so a leaked one is easy to recognise (and to scan for).
pub const KEY_PREFIX: &str = "svck_";
/// The other header a key may come in.
pub const X_API_KEY: &str = "x-api-key";

/// Who presented a valid key: its configured name and scopes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub scopes: Vec<Scope>,
}

impl Identity {
    pub fn allows(&self, scope: Scope) -> bool {
        self.scopes.contains(&scope)
    }
}

/// Why a request has no identity. Both answer 401; only the log tells them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthFailure {
    /// No `Authorization: Bearer` nor `X-Api-Key` header.
    Missing,
    /// A key no entry has.
    Unknown,
}

impl AuthFailure {
    pub fn reason(self) -> &'static str {
        match self {
            AuthFailure::Missing => "no API key",
            AuthFailure::Unknown => "unknown API key",
        }
    }
}

struct Entry {
    digest: [u8; 32],
    identity: Identity,
}

/// The configured keys, by digest.
pub struct KeyTable {
    entries: Vec<Entry>,
}

impl std::fmt::Debug for KeyTable {
    /// Names only: a digest is as good as the key to an offline guesser.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list()
            .entries(self.entries.iter().map(|e| &e.identity.name))
            .finish()
    }
}

impl KeyTable {
    /// The table of `keys`, as checked by the config (64 hex digits each).
    pub fn new(keys: &[ApiKeySettings]) -> Result<KeyTable, String> {
        let entries = keys
            .iter()
            .map(|k| {
                let digest = parse_digest(&k.sha256)
                    .ok_or_else(|| format!("API key `{}`: sha256 is not 64 hex digits", k.name))?;
                Ok(Entry {
                    digest,
                    identity: Identity {
                        name: k.name.clone(),
                        scopes: k.scopes.clone(),
                    },
                })
            })
            .collect::<Result<_, String>>()?;
        Ok(KeyTable { entries })
    }

    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The identity of `key`. Every entry is compared, each in constant time, whether
    /// or not an earlier one matched.
    pub fn lookup(&self, key: &str) -> Option<&Identity> {
        let presented = digest(key);
        let mut found = None;
        for entry in &self.entries {
            if digests_equal(&entry.digest, &presented) {
                found = Some(&entry.identity);
            }
        }
        found
    }

    /// The identity of the key `headers` present.
    pub fn authenticate(&self, headers: &HeaderMap) -> Result<&Identity, AuthFailure> {
        let key = presented_key(headers).ok_or(AuthFailure::Missing)?;
        self.lookup(key).ok_or(AuthFailure::Unknown)
    }
}

/// The key in `Authorization: Bearer <key>` (scheme in any case), else in `X-Api-Key`.
pub fn presented_key(headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, rest) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| rest.trim())
        })
        .filter(|k| !k.is_empty());
    bearer.or_else(|| {
        headers
            .get(X_API_KEY)
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .filter(|k| !k.is_empty())
    })
}

/// A new random key: `svck_` and 32 bytes from the operating system, in hex.
pub fn generate_key() -> String {
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng
        .try_fill_bytes(&mut bytes)
        .expect("the operating system's random source works");
    format!("{KEY_PREFIX}{}", to_hex(&bytes))
}

/// What the config holds for `key`: its SHA-256 in lower-case hex.
pub fn hash_key(key: &str) -> String {
    to_hex(&digest(key))
}

fn digest(key: &str) -> [u8; 32] {
    Sha256::digest(key.as_bytes()).into()
}

/// Equality that takes the same time wherever the digests differ.
fn digests_equal(a: &[u8; 32], b: &[u8; 32]) -> bool {
    bool::from(a.ct_eq(b))
}

fn to_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn parse_digest(hex: &str) -> Option<[u8; 32]> {
    if hex.len() != 64 || !hex.is_ascii() {
        return None;
    }
    let mut out = [0u8; 32];
    for (i, byte) in out.iter_mut().enumerate() {
        *byte = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).ok()?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use actix_web::http::header::{HeaderName, HeaderValue};

    use super::*;

    const SHOP: &str = "svck_shop-key-for-tests";
    const ADMIN: &str = "svck_admin-key-for-tests";

    fn table() -> KeyTable {
        let entry = |name: &str, key: &str, scopes: Vec<Scope>| ApiKeySettings {
            name: name.into(),
            sha256: hash_key(key),
            scopes,
            rate_per_second: None,
            burst: None,
        };
        KeyTable::new(&[
            entry("shop", SHOP, vec![Scope::OrdersRead, Scope::OrdersWrite]),
            entry("admin", &ADMIN.to_uppercase(), vec![Scope::ProductsWrite]),
        ])
        .unwrap()
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (name, value) in pairs {
            h.append(
                HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        h
    }

    #[test]
    fn a_bearer_key_gives_its_name_and_scopes() {
        let t = table();
        let who = t
            .authenticate(&headers(&[("authorization", &format!("Bearer {SHOP}"))]))
            .unwrap();
        assert_eq!(who.name, "shop");
        assert!(who.allows(Scope::OrdersWrite) && !who.allows(Scope::ProductsRead));
        let lower = headers(&[("authorization", &format!("bearer  {SHOP} "))]);
        assert_eq!(t.authenticate(&lower).unwrap().name, "shop");
    }

    #[test]
    fn an_x_api_key_works_too() {
        let t = table();
        let who = t.authenticate(&headers(&[("x-api-key", SHOP)])).unwrap();
        assert_eq!(who.name, "shop");
        // A non-Bearer Authorization (e.g. Basic) does not hide the X-Api-Key.
        let both = headers(&[("authorization", "Basic dXNlcjpwdw=="), ("x-api-key", SHOP)]);
        assert_eq!(t.authenticate(&both).unwrap().name, "shop");
    }

    #[test]
    fn missing_and_wrong_keys_are_refused() {
        let t = table();
        for h in [
            headers(&[]),
            headers(&[("authorization", "Bearer ")]),
            headers(&[("authorization", "Basic abc")]),
            headers(&[("x-api-key", "  ")]),
        ] {
            assert_eq!(t.authenticate(&h), Err(AuthFailure::Missing), "{h:?}");
        }
        for wrong in [
            &SHOP[..SHOP.len() - 1],
            "svck_",
            ADMIN,
            &SHOP.to_uppercase(),
        ] {
            let h = headers(&[("x-api-key", wrong)]);
            assert_eq!(t.authenticate(&h), Err(AuthFailure::Unknown), "{wrong}");
        }
        assert_eq!(t.lookup(&ADMIN.to_uppercase()).unwrap().name, "admin");
    }

    #[test]
    fn the_digest_compare_is_exact_on_every_byte() {
        let a = digest(SHOP);
        assert!(digests_equal(&a, &a));
        for i in [0, 15, 31] {
            let mut b = a;
            b[i] ^= 0x01;
            assert!(!digests_equal(&a, &b), "byte {i}");
        }
        assert!(!digests_equal(&a, &[0u8; 32]));
    }

    #[test]
    fn keys_are_random_prefixed_hex_and_hash_to_the_config_form() {
        let (k1, k2) = (generate_key(), generate_key());
        assert_ne!(k1, k2);
        let hex = k1.strip_prefix(KEY_PREFIX).unwrap();
        assert_eq!(hex.len(), 64);
        assert!(hex
            .bytes()
            .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase()));
        // SHA-256("abc"), the FIPS 180-2 example.
        assert_eq!(
            hash_key("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(parse_digest(&hash_key(&k1)), Some(digest(&k1)));
        assert_eq!(parse_digest(&"A".repeat(64)), Some([0xaa; 32]));
        assert_eq!(parse_digest("ab"), None);
        assert_eq!(parse_digest(&"é".repeat(32)), None);
    }

    #[test]
    fn debug_shows_names_only() {
        let shown = format!("{:?}", table());
        assert_eq!(shown, r#"["shop", "admin"]"#);
    }
}
