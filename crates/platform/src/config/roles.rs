//! The `roles:` section: roles from files, and who of them may call built-in endpoints.
//!
//! `dir` names a directory of role manifests (`<role>.yaml`, the schema of the built-in
//! ones) for roles svc does not contain: services in other languages, run beside their
//! application. `extra_callers` lets such a role call a built-in role's endpoint, one
//! endpoint at a time, keyed by the role that owns it:
//!
//! ```yaml
//! roles:
//!   dir: /etc/svc/roles
//!   extra_callers:
//!     inventory:
//!       "GET /v1/products/{sku}": [loyalty]
//! ```
//!
//! Nothing is granted by default, and `svc roles` marks every extended caller with `+`.
//! The catalog checks both against the manifests when it is built
//! ([`crate::role_files`]); here only the shape is parsed.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Callers added by config: owning role → `"METHOD /path"` → roles from files.
pub type ExtraCallers = BTreeMap<String, BTreeMap<String, Vec<String>>>;

#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct RolesSettings {
    /// Directory of role manifests (`*.yaml`), relative to the working directory.
    /// Unset: only the built-in roles (`svc dev` also reads `roles.d/` next to its config).
    pub dir: Option<PathBuf>,
    /// Callers granted to roles from files on built-in endpoints.
    pub extra_callers: ExtraCallers,
}
