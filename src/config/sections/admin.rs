//! `admin:` the admin HTTP listener (`/metrics`, `/healthz`, `/readyz`, `/api/v1`, the
//! dashboard; `src/admin`) and the `$SYS` topics.

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// The admin listener and `$SYS`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Admin {
    /// Where the admin HTTP listener binds; null disables it. Default `127.0.0.1:9884`.
    #[serde(deserialize_with = "super::listeners::optional_address")]
    pub listen: Option<SocketAddr>,
    /// Bearer token every request must carry (`Authorization: Bearer TOKEN`); required when
    /// `listen` is not a loopback address. Default null.
    pub token: Option<String>,
    /// A file whose first line is the token, instead of `token`. Default null.
    pub token_file: Option<PathBuf>,
    /// Seconds between `$SYS` updates (retained, only what changed); 0 turns `$SYS` off.
    /// Default 10 (as mosquitto).
    pub sys_interval: u64,
}

/// The admin listener's default address.
pub const DEFAULT_ADMIN_LISTEN: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 9884);

impl Default for Admin {
    fn default() -> Admin {
        Admin {
            listen: Some(DEFAULT_ADMIN_LISTEN),
            token: None,
            token_file: None,
            sys_interval: 10,
        }
    }
}

impl Admin {
    /// Whether a token is configured (in the file or inline).
    pub fn has_token(&self) -> bool {
        self.token.is_some() || self.token_file.is_some()
    }

    /// Checks what the file alone can tell; `Err` is (key, value, expected).
    pub(in crate::config) fn check(&self) -> Result<(), (&'static str, String, &'static str)> {
        if self.token.is_some() && self.token_file.is_some() {
            return Err(("admin.token", "set".into(), "token or token_file, not both"));
        }
        if matches!(&self.token, Some(t) if t.trim().is_empty()) {
            return Err(("admin.token", "\"\"".into(), "a non-empty token, or null"));
        }
        if let Some(addr) = self.listen {
            if !addr.ip().is_loopback() && !self.has_token() {
                return Err((
                    "admin.listen",
                    addr.to_string(),
                    "a loopback address, or admin.token / admin.token_file set \
                     (off loopback the admin API requires a bearer token)",
                ));
            }
        }
        if self.sys_interval > 86_400 {
            return Err((
                "admin.sys_interval",
                self.sys_interval.to_string(),
                "0..=86400",
            ));
        }
        Ok(())
    }
}
