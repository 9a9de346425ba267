//! `listeners:` the addresses the broker listens on, one per transport.

use std::fmt;
use std::net::SocketAddr;

use serde::de::{self, Deserializer, Unexpected, Visitor};
use serde::{Deserialize, Serialize};

/// The listening addresses; each is `IP:PORT`, or null to disable that transport.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Listeners {
    /// MQTT over TCP; `null` disables it. Default `0.0.0.0:1883`.
    #[serde(deserialize_with = "optional_address")]
    pub tcp: Option<SocketAddr>,
    /// MQTT over QUIC (UDP, ALPN `mqtt`); `null` disables it. Default `0.0.0.0:1884`.
    #[serde(deserialize_with = "optional_address")]
    pub quic: Option<SocketAddr>,
    /// MQTT over TCP + TLS 1.3 (MQTTS, usually port 8883); `null` disables it. Default null.
    #[serde(deserialize_with = "optional_address")]
    pub mqtts: Option<SocketAddr>,
    /// MQTT over WebSocket (usually port 8083); `null` disables it. Default null.
    #[serde(deserialize_with = "optional_address")]
    pub ws: Option<SocketAddr>,
    /// MQTT over WebSocket + TLS 1.3 (usually 8084), the QUIC certificate. Default null.
    #[serde(deserialize_with = "optional_address")]
    pub wss: Option<SocketAddr>,
}

impl Default for Listeners {
    fn default() -> Self {
        Listeners {
            tcp: Some(SocketAddr::from(([0, 0, 0, 0], 1883))),
            quic: Some(SocketAddr::from(([0, 0, 0, 0], 1884))),
            mqtts: None,
            ws: None,
            wss: None,
        }
    }
}

/// What a listener address must be, as error messages say it.
const ADDRESS: &str = "IP:PORT such as 0.0.0.0:1883 or \"[::]:1883\" (host names are not \
                       resolved), or null to disable";

/// Reads `IP:PORT` or null. serde's own `SocketAddr` says only "invalid socket address
/// syntax"; this says what to write, and what went wrong with the usual mistakes (a bare port,
/// an unquoted IPv6 address, which YAML reads as a sequence).
pub(super) fn optional_address<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<SocketAddr>, D::Error> {
    d.deserialize_option(OptionalAddress)
}

struct OptionalAddress;

impl<'de> Visitor<'de> for OptionalAddress {
    type Value = Option<SocketAddr>;

    fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(ADDRESS)
    }

    fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
        Ok(None)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_any(self)
    }

    fn visit_str<E: de::Error>(self, text: &str) -> Result<Self::Value, E> {
        text.parse()
            .map(Some)
            .map_err(|_| E::invalid_value(Unexpected::Str(text), &self))
    }

    fn visit_u64<E: de::Error>(self, port: u64) -> Result<Self::Value, E> {
        Err(E::invalid_type(
            Unexpected::Unsigned(port),
            &"IP:PORT (a port alone is not enough: write 0.0.0.0:PORT)",
        ))
    }

    fn visit_seq<A: de::SeqAccess<'de>>(self, _: A) -> Result<Self::Value, A::Error> {
        Err(de::Error::invalid_type(
            Unexpected::Seq,
            &"IP:PORT (quote IPv6 addresses: \"[::]:1883\")",
        ))
    }
}
