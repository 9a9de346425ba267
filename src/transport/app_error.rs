//! QUIC application error codes on CONNECTION_CLOSE, RESET_STREAM and STOP_SENDING
//! (compatible with EMQX), shared by the QUIC glue, its 0-RTT gate and the server's shutdown.

/// The MQTT connection ended normally (DISCONNECT, or the server shutting down cleanly).
pub const NORMAL: u32 = 0;
/// The MQTT connection ended abnormally (protocol error, keep alive, takeover, lost stream).
pub const ABNORMAL: u32 = 1;
/// The server refused the connection because it is overloaded; also the stream error of a
/// stream opened faster than `limits.quic_stream_opens_per_sec`.
pub const OVERLOAD: u32 = 2;
/// On ALPN `MQTT-next`, an abnormal end is the draft's ERROR_UNSPECIFIED.
pub const MQTT_NEXT_UNSPECIFIED: u32 = 0xB2;
