//! mqttd to mqttd (README "Bridges"): an edge mqttd bridges to a central mqttd over QUIC,
//! trusting the central broker's generated certificate; both directions, QoS 0/1/2, retained
//! flags and prefixes cross. Over QUIC the bridge survives an address change of the edge
//! (migration), reconnects with 0-RTT, falls back to MQTTS when QUIC gets no answer and goes
//! back to QUIC once it answers again. A message published the moment the edge accepts
//! clients is forwarded.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/in_process.rs"]
mod in_process;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use in_process::within;
use mqttd::client::{Client, ClientOptions, ReceivedMessage};
use mqttd::codec::QoS;
use mqttd::{App, AppHandle, Config};

const LIMIT: Duration = Duration::from_secs(10);

async fn start(data_dir: &std::path::Path, quic: bool, bridges_yaml: &str) -> AppHandle {
    start_on(data_dir, "127.0.0.1:0", quic, bridges_yaml).await
}

async fn start_on(
    data_dir: &std::path::Path,
    tcp: &str,
    quic: bool,
    bridges_yaml: &str,
) -> AppHandle {
    // With QUIC comes MQTTS (the fallback's transport), on the same certificate.
    let (quic, mqtts) = if quic {
        ("127.0.0.1:0", "127.0.0.1:0")
    } else {
        ("null", "null")
    };
    let yaml = format!(
        "listeners:\n  tcp: {tcp}\n  quic: {quic}\n  mqtts: {mqtts}\nstorage:\n  data_dir: {}\nlog:\n  level: warn\n{bridges_yaml}",
        data_dir.display()
    );
    let config = Config::from_yaml(&yaml, std::path::Path::new("test.yaml")).expect("valid config");
    App::new(config).start().await.expect("mqttd starts")
}

async fn client(addr: SocketAddr, id: &str) -> Client {
    Client::connect(ClientOptions::new(addr.to_string()).client_id(id))
        .await
        .expect("client connects")
        .0
}

async fn collect(c: &Client, n: usize, what: &str) -> HashMap<String, ReceivedMessage> {
    within(LIMIT, what, async {
        let mut out = HashMap::new();
        while out.len() < n {
            let m = c.recv().await.expect("a message");
            out.insert(m.topic.to_string(), m);
        }
        out
    })
    .await
}

#[tokio::test]
async fn mqttd_to_mqttd_over_quic() {
    let central_dir = tempfile::tempdir().unwrap();
    let central = start(central_dir.path(), true, "").await;
    let quic = central.quic_addr().expect("QUIC listener");
    let ca = central.server().cert_path().expect("generated certificate");

    let edge_dir = tempfile::tempdir().unwrap();
    let bridge = format!(
        "bridges:\n  - name: central\n    addresses: [\"{quic}\"]\n    transport: quic\n    \
         tls: {{ca_file: \"{}\", server_name: localhost}}\n    backoff: {{base_ms: 50, cap_ms: 200}}\n    \
         topics:\n      - {{pattern: \"up/#\", direction: out, remote_prefix: \"edge1/\"}}\n      \
         - {{pattern: \"down/#\", direction: in, remote_prefix: \"edge1/\"}}\n",
        ca.display()
    );
    let edge = start(edge_dir.path(), false, &bridge).await;
    let edge_addr = edge.tcp_addr().unwrap();
    let central_addr = central.tcp_addr().unwrap();

    // The bridge is up: its retained state says 1.
    let watcher = client(edge_addr, "watcher").await;
    watcher
        .subscribe("$SYS/broker/connection/central/state", QoS::AtLeastOnce)
        .await
        .unwrap();
    within(LIMIT, "the bridge to come up", async {
        while &watcher.recv().await.unwrap().payload[..] != b"1" {}
    })
    .await;

    let central_sub = client(central_addr, "central-sub").await;
    central_sub
        .subscribe("edge1/up/#", QoS::ExactlyOnce)
        .await
        .unwrap();
    let edge_sub = client(edge_addr, "edge-sub").await;
    edge_sub
        .subscribe("down/#", QoS::ExactlyOnce)
        .await
        .unwrap();

    let edge_pub = client(edge_addr, "edge-pub").await;
    let central_pub = client(central_addr, "central-pub").await;
    let cases = [
        ("q0", QoS::AtMostOnce, false),
        ("q1", QoS::AtLeastOnce, false),
        ("q2", QoS::ExactlyOnce, false),
        ("kept", QoS::AtLeastOnce, true),
    ];
    for (name, qos, retain) in cases {
        edge_pub
            .publish(format!("up/{name}"), name, qos, retain)
            .await
            .unwrap();
        central_pub
            .publish(format!("edge1/down/{name}"), name, qos, retain)
            .await
            .unwrap();
    }
    let up = collect(&central_sub, cases.len(), "the edge's messages centrally").await;
    let down = collect(&edge_sub, cases.len(), "the central messages at the edge").await;
    for (name, qos, _) in cases {
        for (got, topic) in [
            (&up, format!("edge1/up/{name}")),
            (&down, format!("down/{name}")),
        ] {
            let m = &got[&topic];
            assert_eq!(m.qos, qos, "{topic}");
            assert_eq!(&m.payload[..], name.as_bytes(), "{topic}");
        }
    }
    // The retained flag crossed: a new subscriber at the centre gets it.
    let late = client(central_addr, "central-late").await;
    late.subscribe("edge1/up/kept", QoS::AtLeastOnce)
        .await
        .unwrap();
    let kept = collect(&late, 1, "the retained message centrally").await;
    assert!(kept["edge1/up/kept"].retain);
    let late = client(edge_addr, "edge-late").await;
    late.subscribe("down/kept", QoS::AtLeastOnce).await.unwrap();
    let kept = collect(&late, 1, "the retained message at the edge").await;
    assert!(kept["down/kept"].retain);

    let stats = edge.bridge_stats();
    assert!(stats[0].1.up);
    assert_eq!(stats[0].1.forwarded_out, 4);
    assert_eq!(stats[0].1.forwarded_in, 4);
    edge.shutdown().await;
    central.shutdown().await;
}

/// A client that connects the moment the edge's TCP port accepts connections and publishes at
/// once (CONNECT and PUBLISH in one write, sent before the broker has read anything): the
/// bridge's subscription is in place before any client is served, so the message is
/// forwarded even on the first start (README "Bridges").
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_message_published_the_moment_the_broker_accepts_is_forwarded() {
    use mqttd::codec::{self, Connect, Packet, Properties, ProtocolVersion, Publish};
    use std::io::{Read, Write};

    let central_dir = tempfile::tempdir().unwrap();
    let central = start(central_dir.path(), false, "").await;
    let central_sub = client(central.tcp_addr().unwrap(), "central-sub").await;
    central_sub
        .subscribe("edge1/first/#", QoS::AtLeastOnce)
        .await
        .unwrap();

    // A port that was free a moment ago: the publisher must know it before the broker binds.
    let edge_tcp = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut bytes = bytes::BytesMut::new();
    let connect = Packet::Connect(Box::new(Connect {
        protocol: ProtocolVersion::V5,
        clean_start: true,
        keep_alive: 60,
        properties: Properties::default(),
        client_id: "first".into(),
        will: None,
        username: None,
        password: None,
    }));
    let publish = Packet::Publish(Publish {
        dup: false,
        qos: QoS::AtLeastOnce,
        retain: false,
        topic: "first/msg".into(),
        packet_id: Some(1),
        properties: Properties::default(),
        payload: bytes::Bytes::from_static(b"early"),
    });
    codec::encode(&connect, ProtocolVersion::V5, &mut bytes);
    codec::encode(&publish, ProtocolVersion::V5, &mut bytes);
    let publisher = std::thread::spawn(move || {
        let deadline = std::time::Instant::now() + LIMIT;
        let mut socket = loop {
            match std::net::TcpStream::connect(edge_tcp) {
                Ok(socket) => break socket,
                Err(e) if std::time::Instant::now() > deadline => panic!("edge never came: {e}"),
                Err(_) => {}
            }
        };
        socket.write_all(&bytes).unwrap();
        // CONNACK and PUBACK: the edge took the message.
        socket.set_read_timeout(Some(LIMIT)).unwrap();
        let mut got = bytes::BytesMut::new();
        let mut acked = false;
        while !acked {
            let mut chunk = [0u8; 256];
            let n = socket.read(&mut chunk).expect("the edge answers");
            assert!(n > 0, "the edge closed the connection");
            got.extend_from_slice(&chunk[..n]);
            while let Some(p) =
                codec::decode(&mut got, Some(ProtocolVersion::V5), u32::MAX).unwrap()
            {
                acked |= matches!(p, Packet::PubAck(_));
            }
        }
        socket
    });

    let edge_dir = tempfile::tempdir().unwrap();
    let bridge = format!(
        "bridges:\n  - name: central\n    addresses: [\"{}\"]\n    backoff: {{base_ms: 50, cap_ms: 200}}\n    \
         topics:\n      - {{pattern: \"first/#\", direction: out, remote_prefix: \"edge1/\"}}\n",
        central.tcp_addr().unwrap()
    );
    let edge = start_on(edge_dir.path(), &edge_tcp.to_string(), false, &bridge).await;
    let _socket = tokio::task::spawn_blocking(move || publisher.join().unwrap())
        .await
        .unwrap();
    let got = collect(&central_sub, 1, "the first message centrally").await;
    assert_eq!(&got["edge1/first/msg"].payload[..], b"early");
    edge.shutdown().await;
    central.shutdown().await;
}

/// Polls the edge's only bridge until `ready` holds for its counters.
async fn bridge_until(
    edge: &AppHandle,
    what: &str,
    ready: impl Fn(&mqttd::bridge::BridgeStatsSnapshot) -> bool,
) -> mqttd::bridge::BridgeStatsSnapshot {
    within(LIMIT, what, async {
        loop {
            let stats = edge.bridge_stats()[0].1;
            if ready(&stats) {
                return stats;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}

/// A subscriber to the forwarded `edge1/up/#` at the central broker, and a publisher at the edge.
async fn up_observers(central: &AppHandle, edge: &AppHandle) -> (Client, Client) {
    let central_sub = client(central.tcp_addr().unwrap(), "central-sub").await;
    central_sub
        .subscribe("edge1/up/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let edge_pub = client(edge.tcp_addr().unwrap(), "edge-pub").await;
    (central_sub, edge_pub)
}

/// Publishes `up/<name>` at the edge (QoS 1) and waits for it centrally.
async fn crosses(edge_pub: &Client, central_sub: &Client, name: &str) {
    edge_pub
        .publish(
            format!("up/{name}"),
            name.to_owned(),
            QoS::AtLeastOnce,
            false,
        )
        .await
        .unwrap();
    let got = collect(central_sub, 1, &format!("up/{name} centrally")).await;
    assert!(got.contains_key(&format!("edge1/up/{name}")), "{got:?}");
}

fn quic_bridge(addresses: &str, ca: &std::path::Path, more: &str) -> String {
    format!(
        "bridges:\n  - name: central\n    addresses: [{addresses}]\n    transport: quic\n    \
         tls: {{ca_file: \"{}\", server_name: localhost}}\n    backoff: {{base_ms: 50, cap_ms: 200}}\n{more}    \
         topics:\n      - {{pattern: \"up/#\", direction: out, remote_prefix: \"edge1/\"}}\n",
        ca.display()
    )
}

/// The edge's QUIC connection moves to a new UDP socket (as an address change would): the
/// central broker follows it, forwarding carries on, and no new connection or session is made.
/// Then the central broker drops the bridge (another client takes its session over and
/// leaves): the bridge reconnects with 0-RTT (its CONNECT in the first flight, taken by the
/// central broker) and forwards again.
#[tokio::test]
async fn over_quic_the_bridge_migrates_and_reconnects_with_0rtt() {
    let central_dir = tempfile::tempdir().unwrap();
    let central = start(central_dir.path(), true, "").await;
    let quic = central.quic_addr().unwrap();
    let ca = central.server().cert_path().unwrap();
    let central_addr = central.tcp_addr().unwrap();
    let edge_dir = tempfile::tempdir().unwrap();
    let edge = start(
        edge_dir.path(),
        false,
        &quic_bridge(&format!("\"{quic}\""), ca, ""),
    )
    .await;
    bridge_until(&edge, "the bridge to come up", |s| s.up).await;

    let central_sub = client(central_addr, "central-sub").await;
    central_sub
        .subscribe("edge1/up/#", QoS::AtLeastOnce)
        .await
        .unwrap();
    let edge_pub = client(edge.tcp_addr().unwrap(), "edge-pub").await;
    crosses(&edge_pub, &central_sub, "before").await;

    let migrations = central.server().metrics().await.unwrap().migrations;
    edge.bridge_migrate("central")
        .await
        .expect("the bridge migrates");
    crosses(&edge_pub, &central_sub, "after-migration").await;
    within(LIMIT, "the central broker to see the new address", async {
        while central.server().metrics().await.unwrap().migrations == migrations {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await;
    let stats = edge.bridge_stats()[0].1;
    assert_eq!(stats.reconnects, 0, "the connection carried on: {stats:?}");
    assert_eq!(
        stats.zero_rtt_connects, 0,
        "a first connection has no ticket"
    );

    let early = central.server().quic_stats().zero_rtt_connects;
    let taker = Client::connect(
        ClientOptions::new(central_addr.to_string())
            .client_id("mqttd-bridge-central")
            .clean_start(false)
            .session_expiry(86_400),
    )
    .await
    .unwrap()
    .0;
    taker.disconnect().await.unwrap();
    let stats = bridge_until(&edge, "the bridge to reconnect", |s| {
        s.up && s.reconnects >= 1
    })
    .await;
    assert!(stats.zero_rtt_connects >= 1, "{stats:?}");
    assert!(central.server().quic_stats().zero_rtt_connects > early);
    crosses(&edge_pub, &central_sub, "after-reconnect").await;
    edge.shutdown().await;
    central.shutdown().await;
}

/// QUIC toward a UDP port where nothing answers (a socket that never reads: every packet is
/// silently dropped, as behind a firewall that blocks UDP): after `after_ms` the bridge
/// connects over MQTTS to the fallback address and forwards.
#[tokio::test]
async fn over_quic_the_bridge_falls_back_to_mqtts_when_udp_gets_no_answer() {
    let central_dir = tempfile::tempdir().unwrap();
    let central = start(central_dir.path(), true, "").await;
    let mqtts = central.server().mqtts_addr().unwrap();
    let ca = central.server().cert_path().unwrap();
    let silent = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
    let blocked = silent.local_addr().unwrap();
    let fallback =
        format!("    fallback: {{transport: mqtts, address: \"{mqtts}\", after_ms: 300}}\n");
    let edge_dir = tempfile::tempdir().unwrap();
    let edge = start(
        edge_dir.path(),
        false,
        &quic_bridge(&format!("\"{blocked}\""), ca, &fallback),
    )
    .await;
    let stats = bridge_until(&edge, "the bridge to come up over MQTTS", |s| s.up).await;
    assert_eq!(stats.fallback_connects, 1, "{stats:?}");

    let (central_sub, edge_pub) = up_observers(&central, &edge).await;
    crosses(&edge_pub, &central_sub, "over-mqtts").await;
    drop(silent);
    edge.shutdown().await;
    central.shutdown().await;
}

/// A firewall that blocks UDP and opens later: a relay that drops every datagram while `open`
/// is false, then relays each client's datagrams to `to` from a socket of its own, and the
/// answers back.
struct UdpGate {
    addr: SocketAddr,
    open: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

async fn udp_gate(to: SocketAddr) -> UdpGate {
    use tokio::net::UdpSocket;
    let socket = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = socket.local_addr().unwrap();
    let open = Arc::new(AtomicBool::new(false));
    let task = tokio::spawn({
        let (socket, open) = (socket.clone(), open.clone());
        async move {
            let mut upstreams: HashMap<SocketAddr, Arc<UdpSocket>> = HashMap::new();
            let mut buf = vec![0u8; 65_536];
            while let Ok((n, from)) = socket.recv_from(&mut buf).await {
                if !open.load(Ordering::SeqCst) {
                    continue;
                }
                let upstream = match upstreams.get(&from) {
                    Some(up) => up.clone(),
                    None => {
                        let up = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                        up.connect(to).await.unwrap();
                        let (answers, back) = (up.clone(), socket.clone());
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65_536];
                            while let Ok(n) = answers.recv(&mut buf).await {
                                let _ = back.send_to(&buf[..n], from).await;
                            }
                        });
                        upstreams.insert(from, up.clone());
                        up
                    }
                };
                let _ = upstream.send(&buf[..n]).await;
            }
        }
    });
    UdpGate { addr, open, task }
}

/// The transport the central broker sees the bridge on (its peer label's prefix).
async fn bridge_transport(central: &AppHandle) -> String {
    let clients = central.server().clients().await.unwrap();
    let bridge = clients
        .iter()
        .find(|c| c.client_id.as_deref() == Some("mqttd-bridge-central"))
        .expect("the bridge is connected");
    bridge.peer.split(':').next().unwrap_or_default().to_owned()
}

/// UDP blocked at first: the bridge comes up over MQTTS and checks every `retry_quic_ms`
/// whether QUIC answers; while it does not, the bridge stays where it is. Once UDP gets
/// through, the bridge leaves MQTTS (a normal DISCONNECT, its session kept) for QUIC, and what
/// is published meanwhile crosses.
#[tokio::test]
async fn over_quic_the_bridge_goes_back_to_quic_once_udp_gets_through_again() {
    let central_dir = tempfile::tempdir().unwrap();
    let central = start(central_dir.path(), true, "").await;
    let mqtts = central.server().mqtts_addr().unwrap();
    let ca = central.server().cert_path().unwrap();
    let gate = udp_gate(central.quic_addr().unwrap()).await;
    let fallback = format!(
        "    fallback: {{transport: mqtts, address: \"{mqtts}\", after_ms: 300, retry_quic_ms: 300}}\n"
    );
    let edge_dir = tempfile::tempdir().unwrap();
    let edge = start(
        edge_dir.path(),
        false,
        &quic_bridge(&format!("\"{}\"", gate.addr), ca, &fallback),
    )
    .await;
    let stats = bridge_until(&edge, "the bridge to come up over MQTTS", |s| s.up).await;
    assert_eq!((stats.fallback_connects, stats.quic_returns), (1, 0));
    assert_eq!(bridge_transport(&central).await, "mqtts");

    let (central_sub, edge_pub) = up_observers(&central, &edge).await;
    crosses(&edge_pub, &central_sub, "over-mqtts").await;
    // Two checks or more while UDP is still blocked: nothing moves.
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let stats = edge.bridge_stats()[0].1;
    assert_eq!((stats.quic_returns, stats.reconnects), (0, 0), "{stats:?}");

    gate.open.store(true, Ordering::SeqCst);
    edge_pub
        .publish("up/meanwhile", "m", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    let stats = bridge_until(&edge, "the bridge to move to QUIC", |s| {
        s.up && s.quic_returns == 1
    })
    .await;
    assert_eq!(stats.fallback_connects, 1, "no second fallback: {stats:?}");
    let got = collect(&central_sub, 1, "the message published meanwhile").await;
    assert!(got.contains_key("edge1/up/meanwhile"), "{got:?}");
    crosses(&edge_pub, &central_sub, "over-quic").await;
    assert_eq!(bridge_transport(&central).await, "quic");
    gate.task.abort();
    edge.shutdown().await;
    central.shutdown().await;
}
