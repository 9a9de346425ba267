//! `session:` what the broker grants sessions (expiry, QoS, retain).

use serde::{Deserialize, Serialize};

/// What the broker grants a session: the longest expiry, the highest QoS, retained messages.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SessionDefaults {
    /// Upper bound on the Session Expiry Interval a 5.0 client may request, seconds.
    /// Default 86_400 * 7. MQTT 3.1.1 sessions with clean session = 0 use this value too.
    pub max_session_expiry_secs: u32,
    /// Maximum QoS granted (0, 1, 2). Default 2.
    pub max_qos: u8,
    /// Whether retained messages are supported. Default true.
    pub retain_available: bool,
}

impl Default for SessionDefaults {
    fn default() -> Self {
        SessionDefaults {
            max_session_expiry_secs: 86_400 * 7,
            max_qos: 2,
            retain_available: true,
        }
    }
}
