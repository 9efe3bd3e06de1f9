//! `svc keys new`: make an API key for the public API.
//!
//! Prints the new key once, on the first line of stdout (it is stored nowhere: only its
//! SHA-256 goes into the config), then the YAML entry to paste into `gateway.api_keys`
//! or the `gateway.api_keys_file`; what to do with each goes to stderr, so
//! `svc keys new ... > entry` keeps stdout to the two parts. The entry is checked by
//! the same rules as the config, so what is printed is accepted at start-up.

use std::process::ExitCode;

use super::{fail, EXIT_FAILURE, EXIT_USAGE};
use crate::cli::{KeysCommand, KeysNewArgs};
use crate::roles::gateway::guard::{generate_key, hash_key};
use crate::roles::gateway::settings::{ApiKeySettings, Scope};

pub fn run(command: KeysCommand) -> ExitCode {
    match command {
        KeysCommand::New(args) => new(args),
    }
}

fn new(args: KeysNewArgs) -> ExitCode {
    let key = generate_key();
    let entry = match entry(&args, &hash_key(&key)) {
        Ok(entry) => entry,
        Err(e) => return fail(EXIT_USAGE, e),
    };
    let yaml = match serde_yaml::to_string(&[entry]) {
        Ok(yaml) => yaml,
        Err(e) => return fail(EXIT_FAILURE, format!("cannot write the entry: {e}")),
    };
    eprintln!(
        "New API key `{}`. Give the key (first line) to its holder now: it is shown only\n\
         this once. Clients send it as `Authorization: Bearer <key>` or `X-Api-Key: <key>`.\n\
         Paste the entry (the lines after it) under gateway.api_keys or into the\n\
         gateway.api_keys_file, then restart the gateways.",
        args.name
    );
    println!("{key}");
    print!("{yaml}");
    ExitCode::SUCCESS
}

/// The config entry for a key with hash `sha256`, checked like the config's.
fn entry(args: &KeysNewArgs, sha256: &str) -> Result<ApiKeySettings, String> {
    let mut scopes = Vec::new();
    for name in &args.scopes {
        let scope = Scope::parse(name.trim()).map_err(|e| format!("--scopes: {e}"))?;
        if !scopes.contains(&scope) {
            scopes.push(scope);
        }
    }
    let entry = ApiKeySettings {
        name: args.name.clone(),
        sha256: sha256.to_string(),
        scopes,
        rate_per_second: args.rate_per_second,
        burst: args.burst,
    };
    entry
        .check("command line", "entry")
        .map_err(|e| format!("--{}: {}", flag_of(&e.key), e.reason))?;
    Ok(entry)
}

/// The flag behind a key of the entry, e.g. `entry.rate_per_second` → `rate-per-second`.
fn flag_of(key: &str) -> String {
    key.trim_start_matches("entry.").replace('_', "-")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(name: &str, scopes: &[&str]) -> KeysNewArgs {
        KeysNewArgs {
            name: name.into(),
            scopes: scopes.iter().map(|s| s.to_string()).collect(),
            rate_per_second: None,
            burst: None,
        }
    }

    #[test]
    fn the_entry_parses_back_as_a_config_key() {
        let key = generate_key();
        let mut a = args("shop", &["orders:read", "orders:write", "orders:read"]);
        a.burst = Some(5);
        let e = entry(&a, &hash_key(&key)).unwrap();
        let yaml = serde_yaml::to_string(&[e]).unwrap();
        assert!(!yaml.contains(&key), "the key itself is not in the entry");
        let config = format!("gateway:\n  api_keys:\n{}", indent(&yaml));
        let c = crate::config::Config::parse(&config, "f").unwrap();
        c.validate("f").unwrap();
        let k = &c.gateway.api_keys[0];
        assert_eq!(k.scopes, vec![Scope::OrdersRead, Scope::OrdersWrite]);
        assert_eq!((k.burst, k.rate_per_second), (Some(5), None));
        assert_eq!(k.sha256, hash_key(&key));
    }

    #[test]
    fn bad_arguments_name_the_flag() {
        let e = entry(&args("shop", &["orders:delete"]), &hash_key("k")).unwrap_err();
        assert!(
            e.starts_with("--scopes: unknown scope `orders:delete`"),
            "{e}"
        );
        let e = entry(&args("a b", &["orders:read"]), &hash_key("k")).unwrap_err();
        assert!(e.starts_with("--name:"), "{e}");
        let mut a = args("shop", &["orders:read"]);
        a.rate_per_second = Some(0.0);
        let e = entry(&a, &hash_key("k")).unwrap_err();
        assert!(e.starts_with("--rate-per-second:"), "{e}");
    }

    fn indent(text: &str) -> String {
        text.lines().map(|l| format!("    {l}\n")).collect()
    }
}
