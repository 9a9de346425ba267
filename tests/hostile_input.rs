//! Hostile input against a running broker: while a well-behaved publisher (QUIC) and
//! subscriber (TCP) exchange QoS 1 messages, attacker tasks throw random bytes, truncated valid
//! packets, oversized lengths and half-open connections at TCP, garbage at QUIC control and
//! extra (bidirectional and unidirectional) streams, and garbage datagrams. The broker must stay
//! up, the good subscriber must receive every message, and the metrics must show the rejects.
//!
//! Deterministic: the seed is printed (`HOSTILE_SEED=N` replays one); a few seconds long.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use mqttd::codec::{
    self, Ack, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, Subscribe,
    SubscriptionOptions,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::time::timeout;

const MESSAGES: u32 = 300;
const WAIT: Duration = Duration::from_secs(10);
const V5: ProtocolVersion = ProtocolVersion::V5;
const V4: ProtocolVersion = ProtocolVersion::V3_1_1;

/// xorshift64*: a small deterministic generator, so a failing run can be replayed.
#[derive(Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn bytes(&mut self, max: u64) -> Vec<u8> {
        let n = 1 + self.below(max);
        (0..n).map(|_| self.next() as u8).collect()
    }
    fn fork(&mut self) -> Rng {
        Rng(self.next() | 1)
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
        keep_alive: 30,
        properties: Properties::default(),
        client_id: client_id.into(),
        will: None,
        username: None,
        password: None,
    }))
}

fn publish(topic: &str, payload: Bytes, qos: QoS, packet_id: Option<u16>) -> Packet {
    Packet::Publish(Publish {
        dup: false,
        qos,
        retain: false,
        topic: topic.into(),
        packet_id,
        properties: Properties::default(),
        payload,
    })
}

/// A few valid packets of every kind a client sends, for truncation and mutation.
fn valid_packets(rng: &mut Rng) -> Vec<BytesMut> {
    let version = if rng.below(2) == 0 { V5 } else { V4 };
    let sub = Packet::Subscribe(Subscribe {
        packet_id: 3,
        properties: Properties::default(),
        filters: vec![("good/#".into(), SubscriptionOptions::default())],
    });
    vec![
        encode(&connect("attacker", version), version),
        encode(
            &publish(
                "evil/t",
                Bytes::from_static(b"evil"),
                QoS::AtLeastOnce,
                Some(1),
            ),
            version,
        ),
        encode(&sub, version),
    ]
}

/// Flips some bytes of `data`.
fn mutate(rng: &mut Rng, data: &mut [u8]) {
    for _ in 0..1 + rng.below(4) {
        let i = rng.below(data.len() as u64) as usize;
        data[i] ^= 1 << rng.below(8);
    }
}

async fn tcp_attacker(addr: SocketAddr, mut rng: Rng, stop: Arc<AtomicBool>) -> u32 {
    let mut attacks = 0;
    let mut half_open = Vec::new();
    while !stop.load(Ordering::Relaxed) {
        let Ok(mut socket) = TcpStream::connect(addr).await else {
            continue;
        };
        attacks += 1;
        let packets = valid_packets(&mut rng);
        let bytes: Vec<u8> = match rng.below(6) {
            // Random bytes.
            0 => rng.bytes(2000),
            // A truncated valid packet (the broker waits for the rest: half-open).
            1 => {
                let p = &packets[rng.below(3) as usize];
                p[..rng.below(p.len() as u64) as usize].to_vec()
            }
            // A huge remaining length, before and after CONNECT.
            2 => vec![0x10, 0xFF, 0xFF, 0xFF, 0x7F, 0, 4],
            3 => {
                let mut b = packets[0].to_vec();
                b.extend_from_slice(&[0x30, 0xFF, 0xFF, 0xFF, 0x7F, 0x00]);
                b
            }
            // A valid CONNECT, then mutated packets.
            4 => {
                let mut b = packets[0].to_vec();
                for p in &packets[1..] {
                    let mut p = p.to_vec();
                    mutate(&mut rng, &mut p);
                    b.extend_from_slice(&p);
                }
                b
            }
            // Nothing at all: a connection that never sends CONNECT.
            _ => Vec::new(),
        };
        let _ = socket.write_all(&bytes).await;
        if rng.below(3) == 0 && half_open.len() < 50 {
            half_open.push(socket);
        } else {
            // Read what the broker answers for a moment, then go.
            let mut sink = [0u8; 512];
            let _ = timeout(Duration::from_millis(20), socket.read(&mut sink)).await;
        }
        tokio::task::yield_now().await;
    }
    attacks
}

async fn quic_client(server: &mqttd::server::ServerHandle) -> quinn::Connection {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(server.cert_path().unwrap()).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"mqtt".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
    let mut endpoint =
        quinn::Endpoint::client("127.0.0.1:0".parse::<SocketAddr>().unwrap()).unwrap();
    let mut client = quinn::ClientConfig::new(Arc::new(crypto));
    let mut transport = quinn::TransportConfig::default();
    transport.datagram_receive_buffer_size(Some(65536));
    client.transport_config(Arc::new(transport));
    endpoint.set_default_client_config(client);
    let connecting = endpoint
        .connect(server.quic_addr().unwrap(), "localhost")
        .unwrap();
    timeout(WAIT, connecting).await.unwrap().unwrap()
}

async fn quic_attacker(
    server: &mqttd::server::ServerHandle,
    mut rng: Rng,
    stop: Arc<AtomicBool>,
) -> u32 {
    let mut attacks = 0;
    while !stop.load(Ordering::Relaxed) {
        attacks += 1;
        let connection = quic_client(server).await;
        let Ok((mut control, _control_recv)) = connection.open_bi().await else {
            continue;
        };
        let packets = valid_packets(&mut rng);
        if attacks == 1 {
            // First a burst: streams and datagrams faster than the rate limits allow.
            let _ = control
                .write_all(&encode(&connect("quic-burst", V5), V5))
                .await;
            tokio::time::sleep(Duration::from_millis(50)).await;
            for _ in 0..250 {
                let opened = timeout(Duration::from_millis(200), connection.open_uni()).await;
                let Ok(Ok(mut s)) = opened else { break };
                let _ = s.write_all(&[0xC0, 0x00]).await;
                let _ = s.finish();
            }
            for _ in 0..3000 {
                let _ = connection.send_datagram(Bytes::from(rng.bytes(100)));
                tokio::task::yield_now().await;
            }
        } else if rng.below(4) == 0 {
            // Garbage on the control stream.
            let _ = control.write_all(&rng.bytes(500)).await;
        } else {
            let _ = control
                .write_all(&encode(&connect("quic-attacker", V5), V5))
                .await;
            for _ in 0..1 + rng.below(20) {
                match rng.below(3) {
                    0 => {
                        if let Ok((mut s, _r)) = connection.open_bi().await {
                            let mut p = packets[rng.below(3) as usize].to_vec();
                            mutate(&mut rng, &mut p);
                            let _ = s.write_all(&p).await;
                            let _ = s.write_all(&rng.bytes(300)).await;
                        }
                    }
                    1 => {
                        if let Ok(mut s) = connection.open_uni().await {
                            let _ = s.write_all(&rng.bytes(300)).await;
                            let _ = s.finish();
                        }
                    }
                    _ => {
                        for _ in 0..50 {
                            let mut d = packets[1].to_vec();
                            if rng.below(2) == 0 {
                                mutate(&mut rng, &mut d);
                            } else {
                                d = rng.bytes(200);
                            }
                            let _ = connection.send_datagram(Bytes::from(d));
                        }
                    }
                }
            }
        }
        tokio::time::sleep(Duration::from_millis(30)).await;
        if rng.below(2) == 0 {
            connection.close(0u32.into(), b"");
        }
    }
    attacks
}

/// The good subscriber (MQTT 3.1.1 over TCP, QoS 1): returns every message id it received.
async fn good_subscriber(addr: SocketAddr, ready: tokio::sync::oneshot::Sender<()>) -> Vec<u32> {
    let mut socket = TcpStream::connect(addr).await.unwrap();
    socket
        .write_all(&encode(&connect("good-sub", V4), V4))
        .await
        .unwrap();
    let sub = Packet::Subscribe(Subscribe {
        packet_id: 1,
        properties: Properties::default(),
        filters: vec![(
            "good/t".into(),
            SubscriptionOptions {
                qos: QoS::AtLeastOnce,
                ..Default::default()
            },
        )],
    });
    socket.write_all(&encode(&sub, V4)).await.unwrap();
    let mut ready = Some(ready);
    let mut buf = BytesMut::new();
    let mut got = Vec::new();
    loop {
        while let Some(packet) = codec::decode(&mut buf, Some(V4), u32::MAX).unwrap() {
            match packet {
                Packet::SubAck(_) => {
                    let _ = ready.take().unwrap().send(());
                }
                Packet::Publish(p) => {
                    let id: u32 = std::str::from_utf8(&p.payload).unwrap().parse().unwrap();
                    got.push(id);
                    if let Some(packet_id) = p.packet_id {
                        socket
                            .write_all(&encode(&Packet::PubAck(Ack::new(packet_id)), V4))
                            .await
                            .unwrap();
                    }
                }
                _ => {}
            }
        }
        if got.len() >= MESSAGES as usize {
            return got;
        }
        let Ok(read) = timeout(WAIT, socket.read_buf(&mut buf)).await else {
            panic!(
                "the good subscriber waited too long, with {} messages",
                got.len()
            );
        };
        let n = read.unwrap();
        assert!(n > 0, "the broker closed the good subscriber");
    }
}

/// The good publisher (MQTT 5.0 over QUIC, QoS 1): waits for each PUBACK.
async fn good_publisher(server: &mqttd::server::ServerHandle) {
    let connection = quic_client(server).await;
    let (mut send, mut recv) = connection.open_bi().await.unwrap();
    send.write_all(&encode(&connect("good-pub", V5), V5))
        .await
        .unwrap();
    let mut buf = BytesMut::new();
    let next = |buf: &mut BytesMut| codec::decode(buf, Some(V5), u32::MAX).unwrap();
    async fn fill(recv: &mut quinn::RecvStream, buf: &mut BytesMut) {
        let mut chunk = [0u8; 4096];
        let n = timeout(WAIT, recv.read(&mut chunk))
            .await
            .expect("the good publisher waited too long")
            .unwrap()
            .expect("the broker closed the good publisher");
        buf.extend_from_slice(&chunk[..n]);
    }
    loop {
        match next(&mut buf) {
            Some(Packet::ConnAck(ack)) => {
                assert!(!ack.code.is_error());
                break;
            }
            Some(other) => panic!("unexpected {other:?}"),
            None => fill(&mut recv, &mut buf).await,
        }
    }
    for i in 0..MESSAGES {
        let packet_id = (i % 60_000 + 1) as u16;
        let p = publish(
            "good/t",
            Bytes::from(i.to_string()),
            QoS::AtLeastOnce,
            Some(packet_id),
        );
        send.write_all(&encode(&p, V5)).await.unwrap();
        loop {
            match next(&mut buf) {
                Some(Packet::PubAck(a)) if a.packet_id == packet_id => break,
                Some(other) => panic!("unexpected {other:?}"),
                None => fill(&mut recv, &mut buf).await,
            }
        }
        // About three seconds of publishing while the attacks go on.
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_broker_survives_hostile_input_and_the_good_client_loses_nothing() {
    let seed: u64 = std::env::var("HOSTILE_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        })
        | 1;
    println!("hostile input seed: HOSTILE_SEED={seed}");
    let mut rng = Rng(seed);

    let dir = tempfile::tempdir().unwrap();
    let mut config = mqttd::Config::default();
    config.listeners.tcp = Some("127.0.0.1:0".parse().unwrap());
    config.listeners.quic = Some("127.0.0.1:0".parse().unwrap());
    config.storage.data_dir = Some(dir.path().to_path_buf());
    config.limits.connect_timeout_secs = 2;
    config.limits.max_packet_size = 64 * 1024;
    // Low enough that the bursts below exceed them even on a slow machine.
    config.limits.quic_stream_opens_per_sec = 20;
    config.limits.quic_datagrams_per_sec = 200;
    let server = Arc::new(mqttd::server::start(config).await.expect("broker starts"));
    let tcp = server.tcp_addr().unwrap();

    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel();
    let subscriber = tokio::spawn(good_subscriber(tcp, ready_tx));
    timeout(WAIT, ready_rx).await.unwrap().unwrap();

    let stop = Arc::new(AtomicBool::new(false));
    let mut attackers = Vec::new();
    let tcp_attackers = std::env::var("HOSTILE_TCP").map_or(3, |v| v.parse().unwrap());
    let quic_attackers = std::env::var("HOSTILE_QUIC").map_or(2, |v| v.parse().unwrap());
    for _ in 0..tcp_attackers {
        attackers.push(tokio::spawn(tcp_attacker(tcp, rng.fork(), stop.clone())));
    }
    for _ in 0..quic_attackers {
        let server = server.clone();
        let (rng, stop) = (rng.fork(), stop.clone());
        attackers.push(tokio::spawn(async move {
            quic_attacker(&server, rng, stop).await
        }));
    }

    timeout(Duration::from_secs(60), good_publisher(&server))
        .await
        .expect("the good publisher finished in time");
    let mut got = timeout(Duration::from_secs(30), subscriber)
        .await
        .expect("the good subscriber finished in time")
        .unwrap();
    stop.store(true, Ordering::Relaxed);
    let mut attacks = 0;
    for a in attackers {
        attacks += timeout(WAIT, a).await.expect("attacker stops").unwrap();
    }

    got.sort_unstable();
    got.dedup();
    assert_eq!(
        got,
        (0..MESSAGES).collect::<Vec<_>>(),
        "seed {seed}: messages lost"
    );

    // Still up: a new client connects and is answered.
    let mut probe = TcpStream::connect(tcp).await.unwrap();
    probe
        .write_all(&encode(&connect("probe", V4), V4))
        .await
        .unwrap();
    let mut connack = [0u8; 4];
    timeout(WAIT, probe.read_exact(&mut connack))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(connack, [0x20, 0x02, 0x00, 0x00]);

    let m = server.metrics().await.unwrap();
    println!("{attacks} attack connections; metrics: {m:?}");
    assert!(attacks >= 10, "seed {seed}: only {attacks} attacks");
    assert!(
        m.protocol_errors > 0,
        "seed {seed}: no protocol errors counted: {m:?}"
    );
    assert!(
        m.datagrams_dropped > 0,
        "seed {seed}: no bad datagram dropped: {m:?}"
    );
    assert!(
        m.datagrams_rate_limited > 0,
        "seed {seed}: no datagram rate-limited: {m:?}"
    );
    assert!(
        m.streams_refused > 0,
        "seed {seed}: no stream refused: {m:?}"
    );
    drop(probe);
    if let Ok(server) = Arc::try_unwrap(server) {
        server.shutdown().await;
    }
}
