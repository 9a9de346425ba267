//! What the sans-IO broker reads of the configuration: the limits it enforces and what it grants
//! sessions. Not the whole `Config`: listeners, TLS files, storage, QUIC transport parameters
//! and logging belong to the glue, and a broker built for a test or a fuzz case needs none.

use crate::config::{Config, Limits, SessionDefaults};

/// The broker's settings, built from the configuration with `Settings::from(&config)`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Settings {
    /// `limits:` protocol maxima announced to clients, and bounds against abuse.
    pub limits: Limits,
    /// `session:` the longest session expiry, the highest QoS, retained messages.
    pub session: SessionDefaults,
    /// `admin.sys_interval`: seconds between `$SYS` updates (sys.rs); 0 (the default here):
    /// no `$SYS`.
    pub sys_interval_secs: u64,
}

impl From<&Config> for Settings {
    fn from(config: &Config) -> Settings {
        Settings {
            limits: config.limits.clone(),
            session: config.session.clone(),
            sys_interval_secs: config.admin.sys_interval,
        }
    }
}
