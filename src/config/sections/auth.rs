//! `auth:` authentication and access control files and policy.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// Authentication and access control (see `crate::auth` and the README section
/// "Authentication and access control").
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Auth {
    /// Password file (`user:$argon2id$...` lines, managed with `mqttd passwd`).
    pub password_file: Option<PathBuf>,
    /// ACL file (mosquitto-style `topic`/`pattern`/`user`/`client` lines).
    pub acl_file: Option<PathBuf>,
    /// Clients without credentials: `true` everywhere, `false` nowhere, `null` (automatic):
    /// loopback clients only, and only while no password file and no certificate identities
    /// are configured.
    pub allow_anonymous: Option<bool>,
    /// A verified client certificate's CN (else first SAN) is the user name (mutual TLS).
    pub use_identity_as_username: bool,
}
