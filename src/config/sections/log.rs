//! `log:` the log filter.

use serde::{Deserialize, Serialize};

/// Logging.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Logging {
    /// A `tracing` filter (`RUST_LOG` syntax), used when `RUST_LOG` is not set. Default "info".
    pub level: String,
}

impl Default for Logging {
    fn default() -> Self {
        Logging {
            level: "info".into(),
        }
    }
}
