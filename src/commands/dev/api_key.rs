//! The API key of `svc dev`: made once per data dir, kept owner-only, and given to the
//! gateways as a hash — the same checks as production, with a key the developer can
//! read (`<data-dir>/api-key`) and `svc bench` finds on its own.

use std::path::Path;

use crate::roles::gateway::guard::{generate_key, hash_key};

/// The key in `key_file` (made if missing), with `keys_file` written for the gateways:
/// every scope, and a rate limit no local load reaches.
pub fn ensure(key_file: &Path, keys_file: &Path) -> std::io::Result<String> {
    let key = match std::fs::read_to_string(key_file) {
        Ok(text) if !text.trim().is_empty() => text.trim().to_string(),
        _ => {
            let key = generate_key();
            write_private(key_file, &format!("{key}\n"))?;
            key
        }
    };
    let entry = format!(
        "# Written by svc dev from {}: the hash of the dev key.\n\
         - name: dev\n  sha256: {}\n  scopes: [products:read, products:write, orders:read, orders:write]\n  \
         rate_per_second: 100000\n  burst: 100000\n",
        key_file.display(),
        hash_key(&key)
    );
    write_private(keys_file, &entry)?;
    Ok(key)
}

fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    svc_platform::private_files::write_atomically(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_key_is_made_once_and_only_its_hash_is_shared() {
        let dir = tempfile::tempdir().unwrap();
        let (key_file, keys_file) = (dir.path().join("api-key"), dir.path().join("keys.yaml"));
        let key = ensure(&key_file, &keys_file).unwrap();
        assert_eq!(ensure(&key_file, &keys_file).unwrap(), key);
        let shared = std::fs::read_to_string(&keys_file).unwrap();
        assert!(shared.contains(&hash_key(&key)) && !shared.contains(&key));
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
