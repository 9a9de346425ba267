//! The bundled MQTT client (3.1.1 and 5.0 over TCP or QUIC), used by `mqttd pub` /
//! `mqttd sub`, by the tests, and by programs that talk to any MQTT broker.
//!
//! Built like the broker: a sans-IO core ([`state::ClientState`]: the session, its QoS flows,
//! packet identifiers, keep alive, topic aliases, resumption) tested in memory, and thin tokio
//! glue around it: a connection task that owns the state and the streams, and cheap handles
//! ([`Client`], [`ClientStream`]) that send it requests.
//!
//! The glue runs over any ordered byte stream: a TCP socket, a QUIC stream, or whatever
//! [`Client::connect_over`] is given. A QUIC connection can carry several streams at once
//! ([`Client::open_stream`]), each with its own subscriptions and deliveries; packet
//! identifiers are unique across the whole connection.

pub mod args;
mod auth;
mod dial;
mod driver;
mod error;
mod handle;
mod inbox;
mod link;
mod options;
mod quic;
mod quic_endpoint;
mod quic_ext;
mod server_streams;
pub mod state;
mod tickets;
mod tls;
mod tool;
mod types;

pub use auth::{AuthExchange, AuthMethod, EnhancedAuth};
pub use error::{reason_name, ClientError, Reason, TRUST_HINT};
pub use handle::{Client, ClientStream, PendingPublish};
pub(crate) use options::jitter;
pub use options::{
    ClientCert, ClientOptions, Fallback, QuicOptions, Reconnect, Transport, DEFAULT_MQTTS_PORT,
    DEFAULT_QUIC_PORT, DEFAULT_TCP_PORT, MQTT_ALPN,
};
pub use quic_endpoint::QuicEndpoint;
pub use quic_ext::{QuicGrants, QuicStats, StreamMapping};
pub use tool::{run_pub, run_sub};
pub use types::{
    AckToken, Acknowledged, Connected, Message, Pipelined, PipelinedOutcome, PublishOutcome,
    ReceivedMessage, ServerLimits, Subscription, ZeroRtt,
};
