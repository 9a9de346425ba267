//! Migration-aware sessions (`proto-ext/migration.md`): a QUIC client that moves to a new
//! local socket mid-session (as after a NAT rebinding or a change of network) keeps its
//! connection, subscriptions, inflight messages and keep alive; QoS 1/2 messages are neither
//! lost nor duplicated beyond what their QoS allows; the broker reports the new address and
//! counts the migration. The broker issues connection IDs carrying its server id.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::HashMap;
use std::time::{Duration, Instant};

use mqttd::client::{Client, ClientOptions, QuicOptions, Transport};
use mqttd::codec::QoS;
use mqttd::server::ServerHandle;

#[path = "common/in_process.rs"]
mod in_process;

use in_process::Broker;

const WAIT: Duration = Duration::from_secs(10);

async fn within<T>(what: &str, future: impl std::future::Future<Output = T>) -> T {
    in_process::within(WAIT, what, future).await
}

/// The broker issues connection IDs with server id 0a01 (config rotation 1).
async fn broker() -> Broker {
    in_process::start(|config| {
        config.quic.server_id = Some("0a01".into());
        config.quic.cid_config_id = 1;
    })
    .await
}

fn quic(b: &Broker, id: &str) -> ClientOptions {
    ClientOptions::new(b.quic.to_string())
        .transport(Transport::Quic(QuicOptions {
            ca_file: Some(b.cert.clone()),
            insecure: false,
            server_name: Some("localhost".into()),
        }))
        .client_id(id)
}

/// Waits until the broker lists `client` with a peer address on `port`.
async fn peer_port_becomes(server: &ServerHandle, client: &str, port: u16) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let clients = server.clients().await.unwrap();
        let peer = clients
            .iter()
            .find(|c| c.client_id.as_deref() == Some(client))
            .map(|c| c.peer.clone())
            .unwrap_or_default();
        if peer.ends_with(&format!(":{port}")) {
            return peer;
        }
        assert!(
            Instant::now() < deadline,
            "the broker still lists {client} at {peer:?}, not port {port}: {clients:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn qos_of(i: usize) -> QoS {
    [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce][i % 3]
}

#[tokio::test]
async fn a_subscriber_that_moves_keeps_receiving_every_qos() {
    let b = broker().await;
    let mut options = quic(&b, "mover");
    options.keep_alive = Duration::from_secs(1);
    let (mover, _) = within("mover connects", Client::connect(options))
        .await
        .unwrap();
    mover.subscribe("mig/#", QoS::ExactlyOnce).await.unwrap();
    let (publisher, _) = within(
        "publisher connects",
        Client::connect(ClientOptions::new(b.tcp.to_string()).client_id("still")),
    )
    .await
    .unwrap();
    let before = b
        .server
        .clients()
        .await
        .unwrap()
        .into_iter()
        .find(|c| c.client_id.as_deref() == Some("mover"))
        .unwrap()
        .peer;
    assert!(before.starts_with("quic:127.0.0.1:"), "{before}");

    const N: usize = 90;
    let mut received: HashMap<usize, usize> = HashMap::new();
    let mut new_port = None;
    for i in 0..N {
        publisher
            .publish(format!("mig/{i}"), i.to_string(), qos_of(i), false)
            .await
            .unwrap();
        if i == N / 2 {
            // Rebind mid-stream, with messages of every QoS on their way.
            let local = within("migrate", mover.migrate()).await.unwrap();
            new_port = Some(local.port());
        }
    }
    let new_port = new_port.unwrap();
    assert!(!before.ends_with(&format!(":{new_port}")));
    // Every QoS 1/2 message arrives; QoS 0 ones may not (none are lost on loopback, but the
    // QoS allows it).
    let needed = (0..N).filter(|i| qos_of(*i) != QoS::AtMostOnce).count();
    let deadline = Instant::now() + WAIT;
    while (0..N)
        .filter(|i| qos_of(*i) != QoS::AtMostOnce && received.contains_key(i))
        .count()
        < needed
    {
        let left = deadline.saturating_duration_since(Instant::now());
        let message = tokio::time::timeout(left, mover.recv())
            .await
            .unwrap_or_else(|_| panic!("missing messages; got {:?}", received.keys()))
            .unwrap();
        let i: usize = std::str::from_utf8(&message.payload)
            .unwrap()
            .parse()
            .unwrap();
        *received.entry(i).or_default() += 1;
    }
    for (i, count) in &received {
        match qos_of(*i) {
            QoS::ExactlyOnce => assert_eq!(*count, 1, "QoS 2 message {i} delivered {count} times"),
            QoS::AtMostOnce => assert!(*count <= 1, "QoS 0 message {i} delivered {count} times"),
            QoS::AtLeastOnce => {}
        }
    }

    // The broker follows the move, logs it and counts it.
    let after = peer_port_becomes(&b.server, "mover", new_port).await;
    assert_ne!(after, before);
    assert_eq!(b.server.metrics().await.unwrap().migrations, 1);

    // Keep alive carries on over the new path (1.5 x 1 s without it would end the session).
    tokio::time::sleep(Duration::from_millis(2500)).await;
    publisher
        .publish("mig/after", "late", QoS::AtLeastOnce, false)
        .await
        .unwrap();
    loop {
        let message = within("late message", mover.recv()).await.unwrap();
        if &message.payload[..] == b"late" {
            break;
        }
    }
    // The session is the same one: no second connection was made.
    assert_eq!(
        b.server
            .clients()
            .await
            .unwrap()
            .iter()
            .filter(|c| c.client_id.as_deref() == Some("mover"))
            .count(),
        1
    );
    mover.disconnect().await.unwrap();
    publisher.disconnect().await.unwrap();
    b.server.shutdown().await;
}

#[tokio::test]
async fn a_publisher_that_moves_completes_its_qos_flows() {
    let b = broker().await;
    let (watcher, _) = within(
        "watcher connects",
        Client::connect(ClientOptions::new(b.tcp.to_string()).client_id("watch")),
    )
    .await
    .unwrap();
    watcher.subscribe("up/#", QoS::ExactlyOnce).await.unwrap();
    let (mover, _) = within("mover connects", Client::connect(quic(&b, "moving-pub")))
        .await
        .unwrap();
    let mut ports = Vec::new();
    let mut pending = Vec::new();
    for i in 0..60usize {
        let client = mover.clone();
        pending.push(tokio::spawn(async move {
            client
                .publish(format!("up/{i}"), i.to_string(), qos_of(i), false)
                .await
        }));
        if i % 20 == 10 {
            ports.push(within("migrate", mover.migrate()).await.unwrap().port());
            // The broker sees a move when something arrives from the new address: moves with
            // nothing received between them count as one (proto-ext/migration.md). Let the
            // publishes spawned so far go out first.
            tokio::time::sleep(Duration::from_millis(300)).await;
        }
    }
    for p in pending {
        within("publish completes", p).await.unwrap().unwrap();
    }
    let mut seen: HashMap<usize, usize> = HashMap::new();
    while (0..60usize)
        .filter(|i| qos_of(*i) != QoS::AtMostOnce)
        .any(|i| !seen.contains_key(&i))
    {
        let message = within("message", watcher.recv()).await.unwrap();
        let i: usize = std::str::from_utf8(&message.payload)
            .unwrap()
            .parse()
            .unwrap();
        *seen.entry(i).or_default() += 1;
    }
    for (i, count) in &seen {
        if qos_of(*i) == QoS::ExactlyOnce {
            assert_eq!(*count, 1, "QoS 2 message {i} delivered {count} times");
        }
    }
    peer_port_becomes(&b.server, "moving-pub", *ports.last().unwrap()).await;
    assert_eq!(
        b.server.metrics().await.unwrap().migrations as usize,
        ports.len()
    );
    mover.disconnect().await.unwrap();
    watcher.disconnect().await.unwrap();
    b.server.shutdown().await;
}

#[tokio::test]
async fn migrate_needs_quic() {
    let b = broker().await;
    let (client, _) = within(
        "connect",
        Client::connect(ClientOptions::new(b.tcp.to_string()).client_id("tcp")),
    )
    .await
    .unwrap();
    assert!(matches!(
        client.migrate().await,
        Err(mqttd::client::ClientError::Unsupported(_))
    ));
    client.disconnect().await.unwrap();
    b.server.shutdown().await;
}
