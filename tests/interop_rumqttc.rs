//! Interoperability with the `rumqttc` client crate: its MQTT 3.1.1 API
//! (`rumqttc::{AsyncClient, MqttOptions}`) and its MQTT 5.0 API
//! (`rumqttc::v5`). For each: QoS 0/1/2 round trips, a retained message and
//! a persistent session that gets the messages queued while it was offline.
//!
//! Each client's event loop runs in a tokio task that forwards incoming
//! packets to a channel; the tests wait on that channel with timeouts.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use common::{unique, TestBroker};

/// Longest wait for any expected packet.
const WAIT: Duration = Duration::from_secs(5);
/// Upper bound for a whole test.
const TEST_TIMEOUT: Duration = Duration::from_secs(20);

/// Runs a test body with an overall time limit.
async fn bounded(body: impl Future<Output = ()>) {
    tokio::time::timeout(TEST_TIMEOUT, body)
        .await
        .expect("test exceeded its overall time limit");
}

/// Generates the client wrapper and the three scenarios for one rumqttc API
/// (the v4 and v5 APIs have the same shape but different types).
macro_rules! rumqttc_suite {
    (
        module: $module:ident,
        api: { $($api:tt)* },
        configure: |$options:ident, $clean:ident, $persist:ident| $configure:block,
        connack_code_ok: |$code:ident| $code_ok:expr,
        topic_string: |$topic:ident| $topic_string:expr,
        persistent_first_connect_clean: $first_clean:expr,
    ) => {
        mod $module {
            use super::*;
            $($api)*
            use tokio::sync::mpsc::{unbounded_channel, UnboundedReceiver};
            use tokio::task::JoinHandle;

            /// A connected client whose incoming packets arrive on `incoming`.
            pub struct Client {
                pub client: AsyncClient,
                name: String,
                incoming: UnboundedReceiver<Result<Packet, String>>,
                event_loop: JoinHandle<()>,
            }

            /// A received PUBLISH, reduced to what the tests compare.
            #[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
            pub struct Message {
                pub topic: String,
                pub payload: Vec<u8>,
                pub qos: u8,
                pub retain: bool,
            }

            fn qos_number(qos: QoS) -> u8 {
                match qos {
                    QoS::AtMostOnce => 0,
                    QoS::AtLeastOnce => 1,
                    QoS::ExactlyOnce => 2,
                }
            }

            pub fn qos(number: u8) -> QoS {
                match number {
                    0 => QoS::AtMostOnce,
                    1 => QoS::AtLeastOnce,
                    _ => QoS::ExactlyOnce,
                }
            }

            impl Client {
                /// Connects; `clean` = clean session / clean start, `persist` =
                /// keep the session after disconnecting. Returns the client and
                /// the CONNACK's session-present flag.
                pub async fn connect(
                    addr: SocketAddr,
                    client_id: &str,
                    $clean: bool,
                    $persist: bool,
                ) -> (Client, bool) {
                    let mut $options =
                        MqttOptions::new(client_id, addr.ip().to_string(), addr.port());
                    $options.set_keep_alive(Duration::from_secs(30));
                    $configure
                    let (client, mut event_loop) = AsyncClient::new($options, 64);
                    let (sender, incoming) = unbounded_channel();
                    let event_loop = tokio::spawn(async move {
                        loop {
                            match event_loop.poll().await {
                                Ok(Event::Incoming(packet)) => {
                                    if sender.send(Ok(packet)).is_err() {
                                        break;
                                    }
                                }
                                Ok(Event::Outgoing(_)) => {}
                                Err(error) => {
                                    let _ = sender.send(Err(error.to_string()));
                                    break;
                                }
                            }
                        }
                    });
                    let mut client = Client {
                        client,
                        name: client_id.to_string(),
                        incoming,
                        event_loop,
                    };
                    let session_present = client
                        .expect("CONNACK", |packet| match packet {
                            Packet::ConnAck(ack) => {
                                let $code = &ack.code;
                                assert!($code_ok, "connection refused: {:?}", ack);
                                Some(ack.session_present)
                            }
                            _ => None,
                        })
                        .await;
                    (client, session_present)
                }

                /// Waits for the first packet `pick` accepts, skipping others
                /// (PINGRESP and the like) but never a PUBLISH.
                pub async fn expect<T>(
                    &mut self,
                    what: &str,
                    mut pick: impl FnMut(&Packet) -> Option<T>,
                ) -> T {
                    let deadline = tokio::time::Instant::now() + WAIT;
                    loop {
                        let packet = match tokio::time::timeout_at(deadline, self.incoming.recv()).await {
                            Err(_) => panic!("{}: no {what} within {WAIT:?}", self.name),
                            Ok(None) => panic!("{}: event loop ended while waiting for {what}", self.name),
                            Ok(Some(Err(error))) => {
                                panic!("{}: connection error while waiting for {what}: {error}", self.name)
                            }
                            Ok(Some(Ok(packet))) => packet,
                        };
                        if let Some(found) = pick(&packet) {
                            return found;
                        }
                        assert!(
                            !matches!(packet, Packet::Publish(_)),
                            "{}: unexpected PUBLISH while waiting for {what}: {packet:?}",
                            self.name
                        );
                    }
                }

                pub async fn subscribe(&mut self, filter: &str, qos_level: u8) {
                    self.client
                        .subscribe(filter, qos(qos_level))
                        .await
                        .expect("queue SUBSCRIBE");
                    let codes = self
                        .expect("SUBACK", |packet| match packet {
                            Packet::SubAck(ack) => Some(ack.return_codes.clone()),
                            _ => None,
                        })
                        .await;
                    let granted = vec![SubscribeReasonCode::Success(qos(qos_level))];
                    assert_eq!(codes, granted, "{}: SUBACK for {filter}", self.name);
                }

                /// Publishes and waits for PUBACK (QoS 1) or PUBCOMP (QoS 2).
                pub async fn publish(&mut self, topic: &str, payload: &[u8], qos_level: u8, retain: bool) {
                    self.client
                        .publish(topic, qos(qos_level), retain, payload.to_vec())
                        .await
                        .expect("queue PUBLISH");
                    match qos_level {
                        1 => self.expect("PUBACK", |p| matches!(p, Packet::PubAck(_)).then_some(())).await,
                        2 => self.expect("PUBCOMP", |p| matches!(p, Packet::PubComp(_)).then_some(())).await,
                        _ => {}
                    }
                }

                pub async fn next_message(&mut self, what: &str) -> Message {
                    self.expect(what, |packet| match packet {
                        Packet::Publish(publish) => {
                            let $topic = &publish.topic;
                            Some(Message {
                                topic: $topic_string,
                                payload: publish.payload.to_vec(),
                                qos: qos_number(publish.qos),
                                retain: publish.retain,
                            })
                        }
                        _ => None,
                    })
                    .await
                }

                /// Sends DISCONNECT and waits for the event loop to finish.
                pub async fn disconnect(self) {
                    self.client.disconnect().await.expect("queue DISCONNECT");
                    let mut event_loop = self.event_loop;
                    if tokio::time::timeout(WAIT, &mut event_loop).await.is_err() {
                        event_loop.abort();
                        panic!("{}: event loop still running {WAIT:?} after DISCONNECT", self.name);
                    }
                }
            }

            pub async fn qos_round_trips(addr: SocketAddr) {
                let topic = unique(concat!("rumqttc/", stringify!($module), "/qos"));
                let (mut subscriber, _) = Client::connect(addr, &unique("rumqttc-sub"), true, false).await;
                subscriber.subscribe(&topic, 2).await;
                let (mut publisher, _) = Client::connect(addr, &unique("rumqttc-pub"), true, false).await;
                for level in [0u8, 1, 2] {
                    let payload = format!("qos {level} payload").into_bytes();
                    publisher.publish(&topic, &payload, level, false).await;
                    let message = subscriber.next_message("a published message").await;
                    assert_eq!(
                        message,
                        Message { topic: topic.clone(), payload, qos: level, retain: false },
                        "QoS {level} round trip"
                    );
                }
                publisher.disconnect().await;
                subscriber.disconnect().await;
            }

            pub async fn retained_message(addr: SocketAddr) {
                let topic = unique(concat!("rumqttc/", stringify!($module), "/retained"));
                let (mut publisher, _) = Client::connect(addr, &unique("rumqttc-pub"), true, false).await;
                publisher.publish(&topic, b"retained value", 1, true).await;
                let (mut late, _) = Client::connect(addr, &unique("rumqttc-late"), true, false).await;
                late.subscribe(&topic, 1).await;
                let message = late.next_message("the retained message").await;
                assert_eq!(
                    message,
                    Message { topic: topic.clone(), payload: b"retained value".to_vec(), qos: 1, retain: true }
                );
                // Clear it, then a new subscriber's first message is a live one.
                publisher.publish(&topic, b"", 1, true).await;
                let (mut after_clear, _) = Client::connect(addr, &unique("rumqttc-after"), true, false).await;
                after_clear.subscribe(&topic, 1).await;
                publisher.publish(&topic, b"live", 1, false).await;
                let message = after_clear.next_message("the live message").await;
                assert_eq!(message.payload, b"live".to_vec(), "retained message not cleared: {message:?}");
                for client in [publisher, late, after_clear] {
                    client.disconnect().await;
                }
            }

            pub async fn persistent_session_resume(addr: SocketAddr) {
                let client_id = unique(concat!("rumqttc-", stringify!($module), "-persistent"));
                let topic = unique(concat!("rumqttc/", stringify!($module), "/persistent"));
                let (mut first, present) = Client::connect(addr, &client_id, $first_clean, true).await;
                assert!(!present, "a brand new session must not be reported as present");
                first.subscribe(&topic, 2).await;
                first.disconnect().await;

                let (mut publisher, _) = Client::connect(addr, &unique("rumqttc-pub"), true, false).await;
                publisher.publish(&topic, b"queued at qos 1", 1, false).await;
                publisher.publish(&topic, b"queued at qos 2", 2, false).await;

                let (mut resumed, present) = Client::connect(addr, &client_id, false, true).await;
                assert!(present, "the resumed session must be reported as present");
                let mut got = vec![
                    resumed.next_message("a queued message").await,
                    resumed.next_message("a queued message").await,
                ];
                got.sort();
                let expected = vec![
                    Message { topic: topic.clone(), payload: b"queued at qos 1".to_vec(), qos: 1, retain: false },
                    Message { topic: topic.clone(), payload: b"queued at qos 2".to_vec(), qos: 2, retain: false },
                ];
                assert_eq!(got, expected, "messages queued while offline");
                publisher.disconnect().await;
                resumed.disconnect().await;
            }
        }
    };
}

rumqttc_suite! {
    module: v311,
    api: {
        use rumqttc::{AsyncClient, ConnectReturnCode, Event, MqttOptions, Packet, QoS, SubscribeReasonCode};
    },
    configure: |options, clean, _persist| {
        options.set_clean_session(clean);
    },
    connack_code_ok: |code| *code == ConnectReturnCode::Success,
    topic_string: |topic| topic.clone(),
    // MQTT 3.1.1 keeps a session with clean session 0.
    persistent_first_connect_clean: false,
}

rumqttc_suite! {
    module: v5,
    api: {
        use rumqttc::v5::mqttbytes::v5::{ConnectProperties, ConnectReturnCode, Packet, SubscribeReasonCode};
        use rumqttc::v5::mqttbytes::QoS;
        use rumqttc::v5::{AsyncClient, Event, MqttOptions};
    },
    configure: |options, clean, persist| {
        options.set_clean_start(clean);
        if persist {
            let mut properties = ConnectProperties::new();
            properties.session_expiry_interval = Some(300);
            options.set_connect_properties(properties);
        }
    },
    connack_code_ok: |code| *code == ConnectReturnCode::Success,
    topic_string: |topic| String::from_utf8_lossy(topic).into_owned(),
    // MQTT 5.0 starts clean and keeps the session through its expiry interval.
    persistent_first_connect_clean: true,
}

#[tokio::test]
async fn v311_qos_0_1_2_round_trips() {
    let broker = TestBroker::start();
    bounded(v311::qos_round_trips(broker.addr)).await;
}

#[tokio::test]
async fn v311_retained_message() {
    let broker = TestBroker::start();
    bounded(v311::retained_message(broker.addr)).await;
}

#[tokio::test]
async fn v311_persistent_session_resume() {
    let broker = TestBroker::start();
    bounded(v311::persistent_session_resume(broker.addr)).await;
}

#[tokio::test]
async fn v5_qos_0_1_2_round_trips() {
    let broker = TestBroker::start();
    bounded(v5::qos_round_trips(broker.addr)).await;
}

#[tokio::test]
async fn v5_retained_message() {
    let broker = TestBroker::start();
    bounded(v5::retained_message(broker.addr)).await;
}

#[tokio::test]
async fn v5_persistent_session_resume() {
    let broker = TestBroker::start();
    bounded(v5::persistent_session_resume(broker.addr)).await;
}
