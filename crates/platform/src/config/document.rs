//! One config file, two owners: the platform's top-level keys and the application's
//! sections (the roles' settings), parsed in one pass.
//!
//! serde's `deny_unknown_fields` does not combine with `#[serde(flatten)]`, so the
//! application does not flatten [`PlatformConfig`] into its own type: it hands the
//! document's map to [`PlatformConfig::deserialize_beside`], which gives each key the
//! application owns to it ([`AppSections`]) and every other key to the platform's
//! derived, strict deserializer. Unknown keys stay errors, and because the parse stays
//! one streaming pass over the YAML, errors keep their key path (via
//! `serde_path_to_error`) and their line and column.

use std::marker::PhantomData;
use std::path::Path;

use serde::de::value::MapAccessDeserializer;
use serde::de::{
    DeserializeOwned, DeserializeSeed, Deserializer, Error as _, IntoDeserializer, MapAccess,
    Visitor,
};
use serde::Deserialize;

use super::{ConfigError, PlatformConfig};

/// The top-level sections of a config file that belong to the application.
pub trait AppSections {
    /// The top-level keys these sections own; none may be one of [`PlatformConfig::KEYS`].
    const KEYS: &'static [&'static str];

    /// Deserializes the value of `key` (one of [`Self::KEYS`]) as the next value of `map`.
    fn take<'de, A: MapAccess<'de>>(&mut self, key: &str, map: &mut A) -> Result<(), A::Error>;
}

impl PlatformConfig {
    /// Deserializes a whole config document from `map`: the keys of `sections` go to
    /// them, every other key to the platform, which rejects the ones it does not know.
    pub fn deserialize_beside<'de, A, S>(map: A, sections: &mut S) -> Result<Self, A::Error>
    where
        A: MapAccess<'de>,
        S: AppSections,
    {
        let split = Split {
            map,
            sections,
            taken: Vec::new(),
        };
        PlatformConfig::deserialize(MapAccessDeserializer::new(split))
    }
}

/// A map that passes the platform's keys on and feeds the application's to `sections`.
struct Split<'s, A, S> {
    map: A,
    sections: &'s mut S,
    taken: Vec<&'static str>,
}

impl<'de, A: MapAccess<'de>, S: AppSections> MapAccess<'de> for Split<'_, A, S> {
    type Error = A::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, A::Error> {
        loop {
            let Some(key) = self.map.next_key_seed(KnownKey::<S>(PhantomData))? else {
                return Ok(None);
            };
            if let Some(&section) = S::KEYS.iter().find(|k| **k == key) {
                if self.taken.contains(&section) {
                    return Err(A::Error::custom(format!("duplicate field `{section}`")));
                }
                self.taken.push(section);
                self.sections.take(section, &mut self.map)?;
                continue;
            }
            return seed.deserialize(key.into_deserializer()).map(Some);
        }
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(&mut self, seed: V) -> Result<V::Value, A::Error> {
        self.map.next_value_seed(seed)
    }
}

/// A top-level key, refused inside the YAML deserializer when it is neither the
/// platform's nor the application's, so the error carries its line and column and
/// lists every valid key (the platform alone would list only its own).
struct KnownKey<S>(PhantomData<S>);

impl<'de, S: AppSections> DeserializeSeed<'de> for KnownKey<S> {
    type Value = String;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<String, D::Error> {
        deserializer.deserialize_identifier(self)
    }
}

impl<'de, S: AppSections> Visitor<'de> for KnownKey<S> {
    type Value = String;

    fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        f.write_str("a config key")
    }

    fn visit_str<E: serde::de::Error>(self, key: &str) -> Result<String, E> {
        if PlatformConfig::KEYS.contains(&key) || S::KEYS.contains(&key) {
            return Ok(key.to_string());
        }
        let valid: Vec<String> = PlatformConfig::KEYS
            .iter()
            .chain(S::KEYS)
            .map(|k| format!("`{k}`"))
            .collect();
        Err(E::custom(format!(
            "unknown field `{key}`, expected one of {}",
            valid.join(", ")
        )))
    }
}

/// Reads a config file; the error names it.
pub fn read_file(path: &Path) -> Result<String, ConfigError> {
    std::fs::read_to_string(path).map_err(|e| {
        ConfigError::new(
            &path.display().to_string(),
            "-",
            format!("cannot read file: {e}"),
        )
    })
}

/// Parses YAML text into `T`, all defaults when it is empty; errors name `origin`, the
/// key path (`-` for the document itself) and the reason.
pub fn parse_yaml<T: DeserializeOwned + Default>(
    text: &str,
    origin: &str,
) -> Result<T, ConfigError> {
    if text.trim().is_empty() {
        return Ok(T::default());
    }
    let deserializer = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(deserializer).map_err(|err| {
        let key = err.path().to_string();
        let key = if key == "." { "-".to_string() } else { key };
        ConfigError::new(origin, &key, err.into_inner().to_string())
    })
}
