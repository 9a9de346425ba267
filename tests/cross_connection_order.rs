//! Order across connections (issue: Paho's `test_subscribe_options`): client B sends
//! SUBSCRIBE, a little later client A sends a matching QoS 1 PUBLISH; B must get it. Both
//! clients are connected and idle before each round, so the broker's thread is asleep and
//! wakes to find both connections readable at once: the broker must act in the order the
//! data arrived, not in the order its scheduler happens to run the two readers.
//!
//! Runs against the `mqttd` binary (its own runtime, the one users get), over TCP and QUIC,
//! 200 rounds each with a 100 µs gap between the two sends and no wait for the SUBACK.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use common::TestBroker;
use mqttd::codec::{
    self, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, Subscribe,
    SubscriptionOptions,
};

const ROUNDS: usize = 200;
const GAP: Duration = Duration::from_micros(100);
/// Quiet time before each round: long enough for the broker's thread to go to sleep.
const IDLE: Duration = Duration::from_millis(5);
/// How long B waits for a message that should come (a miss costs this much).
const PATIENCE: Duration = Duration::from_millis(500);
/// Stop counting after this many misses (the answer is known by then).
const ENOUGH_MISSES: usize = 5;

fn spin(gap: Duration) {
    let start = Instant::now();
    while start.elapsed() < gap {
        std::hint::spin_loop();
    }
}

fn encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    codec::encode(packet, version, &mut out);
    out
}

fn connect(client_id: &str, version: ProtocolVersion) -> Packet {
    Packet::Connect(Box::new(Connect {
        protocol: version,
        clean_start: true,
        keep_alive: 60,
        properties: Properties::default(),
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    }))
}

fn subscribe(filter: &str, packet_id: u16) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        properties: Properties::default(),
        filters: vec![(
            filter.into(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        )],
    })
}

fn publish(topic: &str, packet_id: u16) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: topic.into(),
        packet_id: Some(packet_id),
        properties: Properties::default(),
        payload: bytes::Bytes::from_static(b"in order"),
    })
}

/// Whether `packet` is the delivery of round `topic`; acknowledges it (QoS 1) through `ack`.
fn is_delivery(packet: &Packet, topic: &str, ack: &mut dyn FnMut(Packet)) -> bool {
    match packet {
        Packet::Publish(p) => {
            if let Some(id) = p.packet_id {
                ack(Packet::PubAck(codec::Ack::new(id)));
            }
            p.topic == topic
        }
        _ => false,
    }
}

/// A blocking MQTT connection over TCP with the crate's codec.
struct TcpClient {
    socket: TcpStream,
    buf: BytesMut,
    version: ProtocolVersion,
}

impl TcpClient {
    fn connect(broker: &TestBroker, id: &str, version: ProtocolVersion) -> TcpClient {
        let socket = TcpStream::connect(broker.addr).expect("connect");
        socket.set_nodelay(true).unwrap();
        let mut client = TcpClient {
            socket,
            buf: BytesMut::new(),
            version,
        };
        client.send(&connect(id, version));
        match client.recv(Duration::from_secs(5)) {
            Some(Packet::ConnAck(a)) if a.code.0 == 0 => client,
            other => panic!("{id}: expected CONNACK, got {other:?}"),
        }
    }

    fn send(&mut self, packet: &Packet) {
        self.socket
            .write_all(&encode(packet, self.version))
            .expect("write");
    }

    /// The next packet, or `None` when none comes within `patience`.
    fn recv(&mut self, patience: Duration) -> Option<Packet> {
        let deadline = Instant::now() + patience;
        loop {
            if let Ok(Some(p)) = codec::decode(&mut self.buf, Some(self.version), u32::MAX) {
                return Some(p);
            }
            let left = deadline.checked_duration_since(Instant::now())?;
            self.socket.set_read_timeout(Some(left)).unwrap();
            let mut chunk = [0u8; 4096];
            match self.socket.read(&mut chunk) {
                Ok(0) => panic!("the broker closed the connection"),
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(_) => return None,
            }
        }
    }

    /// Waits for the delivery on `topic`; false if it does not come.
    fn delivered(&mut self, topic: &str) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(packet) = self.recv(left) else {
                return false;
            };
            let mut acks = Vec::new();
            let hit = is_delivery(&packet, topic, &mut |ack| acks.push(ack));
            for ack in acks {
                self.send(&ack);
            }
            if hit {
                return true;
            }
        }
        false
    }
}

fn tcp_rounds(version: ProtocolVersion) {
    let broker = TestBroker::start();
    let mut b = TcpClient::connect(&broker, &common::unique("order-b"), version);
    let mut a = TcpClient::connect(&broker, &common::unique("order-a"), version);
    let mut misses = Vec::new();
    for round in 0..ROUNDS {
        let topic = format!("order/tcp/{round}");
        let id = (round % 60_000) as u16 + 1;
        std::thread::sleep(IDLE);
        b.send(&subscribe(&topic, id));
        spin(GAP);
        a.send(&publish(&topic, id));
        if !b.delivered(&topic) {
            misses.push(round);
            if misses.len() >= ENOUGH_MISSES {
                break;
            }
        }
        // A's PUBACK (and nothing else) is waiting for it.
        assert!(
            matches!(a.recv(PATIENCE), Some(Packet::PubAck(_))),
            "round {round}: PUBACK to the publisher"
        );
    }
    assert!(
        misses.is_empty(),
        "{version:?} over TCP: B missed the message published 100 µs after its SUBSCRIBE in \
         rounds {misses:?}"
    );
}

#[test]
fn subscribe_then_publish_from_another_tcp_connection_v311() {
    tcp_rounds(ProtocolVersion::V3_1_1);
}

#[test]
fn subscribe_then_publish_from_another_tcp_connection_v5() {
    tcp_rounds(ProtocolVersion::V5);
}

/// One MQTT connection over a QUIC stream (single-stream mode), with a blocking API: each
/// client has its own endpoint and runtime, whose worker puts a write on the wire at once
/// while the test thread spins (in a shared runtime the spinning thread could hold the
/// connection task that sends B's SUBSCRIBE until after A's PUBLISH).
struct QuicClient {
    runtime: tokio::runtime::Runtime,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: BytesMut,
    version: ProtocolVersion,
    conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl QuicClient {
    fn connect(broker: &TestBroker, id: &str) -> QuicClient {
        let version = ProtocolVersion::V5;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let (endpoint, conn, send, recv) = runtime.block_on(async {
            let endpoint = quic_endpoint(broker);
            let conn = endpoint
                .connect(broker.quic_addr.expect("QUIC listener"), "localhost")
                .unwrap()
                .await
                .expect("QUIC handshake");
            let (send, recv) = conn.open_bi().await.unwrap();
            (endpoint, conn, send, recv)
        });
        let mut client = QuicClient {
            runtime,
            send,
            recv,
            buf: BytesMut::new(),
            version,
            conn,
            _endpoint: endpoint,
        };
        client.send(&connect(id, version));
        match client.recv(Duration::from_secs(5)) {
            Some(Packet::ConnAck(a)) if a.code.0 == 0 => client,
            other => panic!("{id}: expected CONNACK, got {other:?}"),
        }
    }

    fn send(&mut self, packet: &Packet) {
        let bytes = encode(packet, self.version);
        self.runtime
            .block_on(self.send.write_all(&bytes))
            .expect("write");
    }

    /// Sends `packet` and returns once it has left in a UDP datagram, so that the gap the
    /// test makes after it is a gap on the wire.
    fn send_now(&mut self, packet: &Packet) {
        let sent_before = self.conn.stats().udp_tx.datagrams;
        self.send(packet);
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.conn.stats().udp_tx.datagrams == sent_before {
            assert!(Instant::now() < deadline, "the packet did not leave");
            std::hint::spin_loop();
        }
    }

    fn recv(&mut self, patience: Duration) -> Option<Packet> {
        loop {
            if let Ok(Some(p)) = codec::decode(&mut self.buf, Some(self.version), u32::MAX) {
                return Some(p);
            }
            let mut chunk = [0u8; 4096];
            let read = self.runtime.block_on(async {
                tokio::time::timeout(patience, self.recv.read(&mut chunk)).await
            });
            let n = read
                .ok()?
                .expect("read")
                .expect("the broker finished the stream");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn delivered(&mut self, topic: &str) -> bool {
        let deadline = Instant::now() + PATIENCE;
        while let Some(left) = deadline.checked_duration_since(Instant::now()) {
            let Some(packet) = self.recv(left) else {
                return false;
            };
            let mut acks = Vec::new();
            let hit = is_delivery(&packet, topic, &mut |ack| acks.push(ack));
            for ack in acks {
                self.send(&ack);
            }
            if hit {
                return true;
            }
        }
        false
    }
}

fn quic_endpoint(broker: &TestBroker) -> quinn::Endpoint {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    let cert = broker.cert_path.as_ref().expect("generated certificate");
    for c in rustls::pki_types::CertificateDer::pem_file_iter(cert).unwrap() {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"mqtt".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

#[test]
fn subscribe_then_publish_from_another_quic_connection() {
    let broker = TestBroker::start();
    let mut b = QuicClient::connect(&broker, &common::unique("order-qb"));
    let mut a = QuicClient::connect(&broker, &common::unique("order-qa"));
    let mut misses = Vec::new();
    for round in 0..ROUNDS {
        let topic = format!("order/quic/{round}");
        let id = (round % 60_000) as u16 + 1;
        std::thread::sleep(IDLE);
        b.send_now(&subscribe(&topic, id));
        spin(GAP);
        a.send_now(&publish(&topic, id));
        if !b.delivered(&topic) {
            misses.push(round);
            if misses.len() >= ENOUGH_MISSES {
                break;
            }
        }
        assert!(
            matches!(a.recv(PATIENCE), Some(Packet::PubAck(_))),
            "round {round}: PUBACK to the publisher"
        );
    }
    assert!(
        misses.is_empty(),
        "QUIC: B missed the message published 100 µs after its SUBSCRIBE in rounds {misses:?}"
    );
}
