//! The values the client API takes and returns: outgoing messages, received messages, and the
//! outcome of each operation.
//!
//! They are plain data shared by the sans-IO state machine and the tokio glue, so both speak in
//! the same terms and the state machine's tests read like uses of the API.

use std::time::Duration;

use bytes::Bytes;
use bytestring::ByteString;

use crate::codec::{Properties, QoS, ReasonCode, SubscriptionOptions};

/// An application message to publish, with its MQTT 5.0 properties.
///
/// ```
/// use mqttd::client::Message;
/// use mqttd::codec::QoS;
/// let request = Message::new("sensors/kitchen", "21.5")
///     .qos(QoS::AtLeastOnce)
///     .content_type("text/plain")
///     .user_property("unit", "celsius");
/// assert_eq!(request.properties.user_properties.len(), 1);
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    pub topic: ByteString,
    pub payload: Bytes,
    pub qos: QoS,
    pub retain: bool,
    /// Sent with MQTT 5.0 only; ignored (not encoded) for 3.1.1.
    pub properties: Properties,
    /// QUIC: send a QoS 0 message in a DATAGRAM frame (`proto-ext/datagrams.md`) when the
    /// connection allows and it fits; else it goes on the stream. Ignored for QoS 1/2.
    pub datagram: bool,
    /// QoS 1/2: send with this packet identifier instead of one the client picks. A bridge
    /// uses it to carry the identifier a message arrived with to the other side, so a
    /// retransmission after a crash is recognised there as the same message (README
    /// "Bridges"). It must not be in use ([`ClientError::PacketIdInUse`](super::ClientError)).
    pub packet_id: Option<u16>,
}

impl Message {
    /// A QoS 0, non-retained message without properties.
    pub fn new(topic: impl Into<ByteString>, payload: impl Into<Bytes>) -> Message {
        Message {
            topic: topic.into(),
            payload: payload.into(),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
            datagram: false,
            packet_id: None,
        }
    }

    /// Use this packet identifier (QoS 1/2), see [`Message::packet_id`].
    pub fn packet_id(mut self, id: u16) -> Message {
        self.packet_id = Some(id);
        self
    }

    /// Send it in a QUIC datagram if it is QoS 0 and fits (see [`Message::datagram`]).
    pub fn datagram(mut self, datagram: bool) -> Message {
        self.datagram = datagram;
        self
    }

    pub fn qos(mut self, qos: QoS) -> Message {
        self.qos = qos;
        self
    }

    pub fn retain(mut self, retain: bool) -> Message {
        self.retain = retain;
        self
    }

    /// Replaces all properties.
    pub fn properties(mut self, properties: Properties) -> Message {
        self.properties = properties;
        self
    }

    /// Payload Format Indicator 1: the payload is UTF-8 (the server checks it).
    pub fn utf8_payload(mut self) -> Message {
        self.properties.payload_format_indicator = Some(1);
        self
    }

    pub fn content_type(mut self, content_type: impl Into<ByteString>) -> Message {
        self.properties.content_type = Some(content_type.into());
        self
    }

    pub fn response_topic(mut self, topic: impl Into<ByteString>) -> Message {
        self.properties.response_topic = Some(topic.into());
        self
    }

    pub fn correlation_data(mut self, data: impl Into<Bytes>) -> Message {
        self.properties.correlation_data = Some(data.into());
        self
    }

    /// Message Expiry Interval, whole seconds.
    pub fn expiry(mut self, expiry: Duration) -> Message {
        let secs = expiry.as_secs().min(u64::from(u32::MAX));
        self.properties.message_expiry_interval = Some(secs as u32);
        self
    }

    /// Appends a user property (they keep their order and may repeat).
    pub fn user_property(
        mut self,
        key: impl Into<ByteString>,
        value: impl Into<ByteString>,
    ) -> Message {
        self.properties
            .user_properties
            .push((key.into(), value.into()));
        self
    }
}

/// An application message received from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedMessage {
    /// The topic name, already resolved when the server used a topic alias.
    pub topic: ByteString,
    pub payload: Bytes,
    /// The QoS it was delivered with (at most the subscription's granted QoS).
    pub qos: QoS,
    /// Set on a retained message sent because of a new subscription, or when the subscription
    /// asked for Retain As Published.
    pub retain: bool,
    /// The server says it may have sent this message before.
    pub dup: bool,
    /// MQTT 5.0 properties (user properties, content type, response topic, correlation data,
    /// subscription identifiers, message expiry...). The Topic Alias is removed: it is per hop.
    pub properties: Properties,
    /// QoS 1/2: names the acknowledgement this message owes. With
    /// [`ClientOptions::manual_acks`](super::ClientOptions::manual_acks) the application sends
    /// it with [`Client::ack`](super::Client::ack); otherwise the client already did.
    pub ack: Option<AckToken>,
}

/// Identifies a received QoS 1/2 message whose acknowledgement is owed (PUBACK, or PUBREC for
/// QoS 2). With manual acknowledgements it stays valid across reconnections as long as the
/// server keeps the session; after the session was lost it acknowledges nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct AckToken {
    pub stream: super::state::StreamKey,
    /// The identifier the server sent the message with.
    pub packet_id: u16,
    pub qos: QoS,
    /// The connection (automatic acknowledgements) or session (manual ones) it belongs to.
    pub(crate) epoch: u64,
}

/// How a publish ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    /// The packet identifier it used (`None` for QoS 0).
    pub packet_id: Option<u16>,
    /// Success, or 0x10 No Matching Subscribers (5.0). Error codes become
    /// [`ClientError::Rejected`](super::ClientError::Rejected) instead.
    pub code: ReasonCode,
    /// The Reason String of the PUBACK / PUBREC / PUBCOMP, if any.
    pub reason_string: Option<ByteString>,
}

/// The server's answer to a SUBSCRIBE or an UNSUBSCRIBE.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acknowledged {
    /// One code per filter, in order: the granted QoS (0x00 to 0x02) or a failure (0x80 and up)
    /// for SUBACK; 0x00 or 0x11 No Subscription Existed, or a failure, for UNSUBACK. An MQTT
    /// 3.1.1 UNSUBACK has no codes: it reads as 0x00 for every filter.
    pub codes: Vec<ReasonCode>,
    /// SUBACK / UNSUBACK properties (reason string, user properties); empty for 3.1.1.
    pub properties: Properties,
}

/// A SUBSCRIBE with several filters, options and properties.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    pub filters: Vec<(ByteString, SubscriptionOptions)>,
    /// Subscription Identifier and user properties (5.0).
    pub properties: Properties,
}

impl Subscription {
    pub fn new() -> Subscription {
        Subscription::default()
    }

    /// Adds a filter with the given maximum QoS and default options.
    pub fn filter(self, filter: impl Into<ByteString>, qos: QoS) -> Subscription {
        let options = SubscriptionOptions {
            qos,
            ..SubscriptionOptions::default()
        };
        self.filter_with(filter, options)
    }

    /// Adds a filter with full options (No Local, Retain As Published, Retain Handling: 5.0).
    pub fn filter_with(
        mut self,
        filter: impl Into<ByteString>,
        options: SubscriptionOptions,
    ) -> Subscription {
        self.filters.push((filter.into(), options));
        self
    }

    /// Subscription Identifier (5.0): 1 to 268,435,455; returned with every matching message.
    pub fn id(mut self, id: u32) -> Subscription {
        self.properties.subscription_identifiers = vec![id];
        self
    }

    /// Asks for this subscription's QoS 0 deliveries in QUIC datagrams (SUBSCRIBE user
    /// property `quic-datagrams: on`, `proto-ext/datagrams.md` section 3).
    pub fn datagrams(self) -> Subscription {
        self.user_property(super::quic_ext::DATAGRAMS_PROPERTY, "on")
    }

    /// Send priority of this subscription's server stream, -100..=100, higher first (SUBSCRIBE
    /// user property `quic-priority`, `proto-ext/flows.md` section 7).
    pub fn priority(self, priority: i8) -> Subscription {
        self.user_property(super::quic_ext::PRIORITY_PROPERTY, priority.to_string())
    }

    pub fn user_property(
        mut self,
        key: impl Into<ByteString>,
        value: impl Into<ByteString>,
    ) -> Subscription {
        self.properties
            .user_properties
            .push((key.into(), value.into()));
        self
    }
}

/// What the server announced in its CONNACK.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Connected {
    /// The server resumed an existing session [MQTT-3.2.2-2].
    pub session_present: bool,
    /// The client identifier in use: ours, or the one the server assigned (5.0, when we sent
    /// an empty one).
    pub client_id: ByteString,
    /// The server chose the client identifier.
    pub assigned_client_id: bool,
    /// The keep alive in force: ours, or the Server Keep Alive [MQTT-3.2.2-21]. Zero: none.
    pub keep_alive: Duration,
    pub limits: ServerLimits,
    /// All CONNACK properties as received (5.0).
    pub properties: Properties,
    /// What the CONNACK granted of the QUIC extensions (datagrams, stream mapping).
    pub quic: super::quic_ext::QuicGrants,
    /// Whether CONNECT went out as QUIC 0-RTT early data, and what the server made of it.
    pub zero_rtt: ZeroRtt,
}

/// Requests [`Client::connect_pipelined`](super::Client::connect_pipelined) sends right
/// behind the CONNECT.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pipelined {
    pub subscription: Option<Subscription>,
    /// QoS 0 only.
    pub messages: Vec<Message>,
}

/// How the pipelined requests ended.
#[derive(Debug)]
pub struct PipelinedOutcome {
    pub subscribed: Option<Result<Acknowledged, super::error::ClientError>>,
    pub published: Vec<Result<PublishOutcome, super::error::ClientError>>,
}

/// QUIC 0-RTT on one connection attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroRtt {
    /// No ticket for this server (first connection in this process), 0-RTT turned off, or TCP.
    #[default]
    NotAttempted,
    /// CONNECT (and what was pipelined with it) went out as early data and the server took it:
    /// the CONNACK came one round trip after the first packet.
    Accepted,
    /// The server refused the early data; everything was sent again after the handshake.
    Rejected,
}

impl ZeroRtt {
    pub fn describe(self) -> &'static str {
        match self {
            ZeroRtt::NotAttempted => "not attempted",
            ZeroRtt::Accepted => "accepted",
            ZeroRtt::Rejected => "rejected (resent in 1-RTT)",
        }
    }
}

/// Limits the server announced (5.0; an MQTT 3.1.1 server announces none, so the defaults
/// apply).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerLimits {
    /// QoS 1/2 publishes the client may have unacknowledged (3.2.2.3.3). Default 65,535.
    pub receive_maximum: u16,
    /// Highest QoS the server accepts (3.2.2.3.4). Default 2.
    pub maximum_qos: QoS,
    /// Whether retained messages are supported (3.2.2.3.5). Default true.
    pub retain_available: bool,
    /// Largest packet the server accepts (3.2.2.3.6). `None`: no limit beyond the protocol's.
    pub maximum_packet_size: Option<u32>,
    /// Topic aliases the client may use toward the server (3.2.2.3.8). Default 0.
    pub topic_alias_maximum: u16,
    pub wildcard_subscriptions: bool,
    pub subscription_identifiers: bool,
    pub shared_subscriptions: bool,
}

impl Default for ServerLimits {
    fn default() -> Self {
        ServerLimits {
            receive_maximum: u16::MAX,
            maximum_qos: QoS::ExactlyOnce,
            retain_available: true,
            maximum_packet_size: None,
            topic_alias_maximum: 0,
            wildcard_subscriptions: true,
            subscription_identifiers: true,
            shared_subscriptions: true,
        }
    }
}

impl ServerLimits {
    /// The limits a CONNACK's properties announce.
    pub fn from_properties(p: &Properties) -> ServerLimits {
        let defaults = ServerLimits::default();
        ServerLimits {
            receive_maximum: p.receive_maximum.unwrap_or(defaults.receive_maximum),
            maximum_qos: p
                .maximum_qos
                .and_then(QoS::from_u8)
                .unwrap_or(defaults.maximum_qos),
            retain_available: p.retain_available != Some(0),
            maximum_packet_size: p.maximum_packet_size,
            topic_alias_maximum: p.topic_alias_maximum.unwrap_or(0),
            wildcard_subscriptions: p.wildcard_subscription_available != Some(0),
            subscription_identifiers: p.subscription_identifier_available != Some(0),
            shared_subscriptions: p.shared_subscription_available != Some(0),
        }
    }
}
