//! Client errors, worded for the person at the terminal.
//!
//! Every variant renders as one line that says what failed and, where the fix is known, what to
//! do (for instance how to trust the broker's self-signed certificate). Reason codes are shown
//! as `0x86 bad user name or password`: the number for searching the spec, the name for reading.

use std::fmt;
use std::path::PathBuf;
use std::time::Duration;

use bytestring::ByteString;

use crate::codec::{DecodeError, ReasonCode};

/// What the trust error says to do, shared by the TLS variants and the CLI.
pub const TRUST_HINT: &str =
    "to trust the broker's self-signed certificate pass --cafile <data-dir>/cert.pem \
     (the certificate the broker wrote on first run), or --insecure to skip verification";

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server name could not be resolved to an address.
    #[error("cannot resolve {server}: {message}")]
    Resolve { server: String, message: String },

    /// The TCP connection (or QUIC handshake) could not be established.
    #[error("cannot connect to {server}: {}", io_reason(.source))]
    Connect {
        server: String,
        source: std::io::Error,
    },

    /// The server's certificate was not trusted.
    #[error(
        "cannot connect to {server}: TLS certificate verification failed ({detail}); {TRUST_HINT}"
    )]
    UntrustedCertificate { server: String, detail: String },

    /// The server does not offer the MQTT ALPN protocol.
    #[error("cannot connect to {server}: the server does not speak MQTT over QUIC (it refused ALPN protocol {alpn:?}); is this the broker's QUIC port?")]
    AlpnMismatch { server: String, alpn: String },

    /// Another TLS or QUIC failure during the handshake.
    #[error("cannot connect to {server}: {message}")]
    Quic { server: String, message: String },

    /// The `--cafile` could not be used.
    #[error("cannot use CA file {}: {message}", path.display())]
    CaFile { path: PathBuf, message: String },

    /// The server answered CONNECT with a failure (3.2.2.2).
    #[error("server refused the connection: {}{}", Reason(*code), ReasonString(reason_string))]
    Refused {
        code: ReasonCode,
        reason_string: Option<ByteString>,
    },

    /// The server sent DISCONNECT (5.0, 3.14).
    #[error("server closed the connection: {}{}", Reason(*code), ReasonString(reason_string))]
    ServerDisconnected {
        code: ReasonCode,
        reason_string: Option<ByteString>,
    },

    /// The connection ended without a DISCONNECT.
    #[error("connection lost: {0}")]
    ConnectionLost(String),

    /// The server broke the protocol; the client closed the connection (5.0: with `code`).
    #[error("protocol error: {message} (closed with {})", Reason(*code))]
    Protocol { code: ReasonCode, message: String },

    /// The server sent bytes that are not a valid packet.
    #[error("protocol error: bad packet from the server: {0}")]
    Decode(#[from] DecodeError),

    /// No answer in time.
    #[error("timed out after {} waiting for {what}", Secs(*after))]
    Timeout { what: &'static str, after: Duration },

    /// The server did not answer PINGREQ: it is gone or overloaded.
    #[error("the server did not answer PINGREQ within {}", Secs(*after))]
    KeepAliveTimeout { after: Duration },

    /// The server answered an operation with an error reason code.
    #[error("{operation} rejected by the server: {}{}", Reason(*code), ReasonString(reason_string))]
    Rejected {
        operation: &'static str,
        code: ReasonCode,
        reason_string: Option<ByteString>,
    },

    /// The request cannot be sent as asked (invalid topic, QoS above the server's maximum...).
    #[error("invalid request: {0}")]
    InvalidRequest(String),

    /// A publish asked for a packet identifier that an unfinished flow still holds.
    #[error("packet identifier {0} is in use")]
    PacketIdInUse(u16),

    /// The server did not keep the session: messages awaiting acknowledgement were discarded.
    #[error("the server did not keep the session: unacknowledged messages were discarded")]
    SessionLost,

    /// The stream the operation ran on was closed.
    #[error("the stream was closed")]
    StreamClosed,

    /// The connection is down; call `reconnect`.
    #[error("not connected")]
    NotConnected,

    /// The client was disconnected or dropped.
    #[error("the client is closed")]
    Closed,

    /// A feature this transport or build does not offer.
    #[error("{0}")]
    Unsupported(String),

    /// Reading or writing the connection failed.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl ClientError {
    /// True when the connection is gone but the session may be resumed with `reconnect`.
    pub fn is_connection_loss(&self) -> bool {
        matches!(
            self,
            ClientError::ConnectionLost(_)
                | ClientError::ServerDisconnected { .. }
                | ClientError::KeepAliveTimeout { .. }
                | ClientError::NotConnected
                | ClientError::Io(_)
        )
    }
}

/// Short, lower-case wording of the common socket errors ("connection refused"), the OS text
/// otherwise.
pub(crate) fn io_reason(e: &std::io::Error) -> String {
    use std::io::ErrorKind::*;
    let text = match e.kind() {
        ConnectionRefused => "connection refused",
        ConnectionReset => "connection reset by peer",
        ConnectionAborted => "connection aborted",
        TimedOut => "timed out",
        AddrNotAvailable => "address not available",
        NotFound => "not found",
        PermissionDenied => "permission denied",
        UnexpectedEof => "the server closed the connection",
        _ => return e.to_string(),
    };
    text.to_owned()
}

/// Displays a reason code as `0x86 bad user name or password`.
#[derive(Debug, Clone, Copy)]
pub struct Reason(pub ReasonCode);

impl fmt::Display for Reason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, reason_name(self.0))
    }
}

struct ReasonString<'a>(&'a Option<ByteString>);

impl fmt::Display for ReasonString<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(text) if !text.is_empty() => write!(f, " ({text})"),
            _ => Ok(()),
        }
    }
}

struct Secs(Duration);

impl fmt::Display for Secs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let d = self.0;
        if d.subsec_millis() == 0 {
            write!(f, "{}s", d.as_secs())
        } else {
            write!(f, "{:.1}s", d.as_secs_f64())
        }
    }
}

/// The name of a reason code (MQTT 5.0 table 2-6), lower case. Codes 0x00 to 0x02 have several
/// names; the generic one is used ("success" / "granted qos N").
pub fn reason_name(code: ReasonCode) -> &'static str {
    match code.0 {
        0x00 => "success",
        0x01 => "granted qos 1",
        0x02 => "granted qos 2",
        0x04 => "disconnect with will message",
        0x10 => "no matching subscribers",
        0x11 => "no subscription existed",
        0x18 => "continue authentication",
        0x19 => "re-authenticate",
        0x80 => "unspecified error",
        0x81 => "malformed packet",
        0x82 => "protocol error",
        0x83 => "implementation specific error",
        0x84 => "unsupported protocol version",
        0x85 => "client identifier not valid",
        0x86 => "bad user name or password",
        0x87 => "not authorized",
        0x88 => "server unavailable",
        0x89 => "server busy",
        0x8A => "banned",
        0x8B => "server shutting down",
        0x8C => "bad authentication method",
        0x8D => "keep alive timeout",
        0x8E => "session taken over",
        0x8F => "topic filter invalid",
        0x90 => "topic name invalid",
        0x91 => "packet identifier in use",
        0x92 => "packet identifier not found",
        0x93 => "receive maximum exceeded",
        0x94 => "topic alias invalid",
        0x95 => "packet too large",
        0x96 => "message rate too high",
        0x97 => "quota exceeded",
        0x98 => "administrative action",
        0x99 => "payload format invalid",
        0x9A => "retain not supported",
        0x9B => "qos not supported",
        0x9C => "use another server",
        0x9D => "server moved",
        0x9E => "shared subscriptions not supported",
        0x9F => "connection rate exceeded",
        0xA0 => "maximum connect time",
        0xA1 => "subscription identifiers not supported",
        0xA2 => "wildcard subscriptions not supported",
        _ => "unknown reason code",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_read_well() {
        let refused = ClientError::Refused {
            code: ReasonCode::BAD_USER_NAME_OR_PASSWORD,
            reason_string: None,
        };
        assert_eq!(
            refused.to_string(),
            "server refused the connection: 0x86 bad user name or password"
        );
        let io = std::io::Error::from(std::io::ErrorKind::ConnectionRefused);
        let connect = ClientError::Connect {
            server: "127.0.0.1:1".into(),
            source: io,
        };
        assert_eq!(
            connect.to_string(),
            "cannot connect to 127.0.0.1:1: connection refused"
        );
        let gone = ClientError::ServerDisconnected {
            code: ReasonCode::SESSION_TAKEN_OVER,
            reason_string: Some("bye".into()),
        };
        assert_eq!(
            gone.to_string(),
            "server closed the connection: 0x8E session taken over (bye)"
        );
        let timeout = ClientError::Timeout {
            what: "CONNACK",
            after: Duration::from_millis(1500),
        };
        assert_eq!(
            timeout.to_string(),
            "timed out after 1.5s waiting for CONNACK"
        );
        let tls = ClientError::UntrustedCertificate {
            server: "localhost:1884".into(),
            detail: "unknown issuer".into(),
        };
        assert!(
            tls.to_string().contains("--cafile <data-dir>/cert.pem"),
            "{tls}"
        );
        assert!(tls.to_string().contains("--insecure"), "{tls}");
    }

    #[test]
    fn every_named_code_has_a_name() {
        for code in [0x00u8, 0x04, 0x10, 0x80, 0x8C, 0x9B, 0xA2] {
            assert_ne!(reason_name(ReasonCode(code)), "unknown reason code");
        }
        assert_eq!(reason_name(ReasonCode(0x03)), "unknown reason code");
    }
}
