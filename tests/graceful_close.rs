//! Closing after an error so that the client can read why (Paho's `test_flow_control2`): a
//! client exceeds Receive Maximum with QoS 2 and goes on writing; the broker answers with
//! DISCONNECT 0x93 and closes. The client must be able to read that DISCONNECT and then a
//! clean end (FIN; TLS close_notify; QUIC stream FIN before CONNECTION_CLOSE), not a reset that
//! fails its writes and may destroy the DISCONNECT unread.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::time::{Duration, Instant};

use bytes::Bytes;
use common::raw::{self, Next, QuicClient, StreamClient, Transport};
use common::TestBroker;
use mqttd::codec::{Packet, ProtocolVersion, QoS, ReasonCode};

/// The broker's Receive Maximum in these tests.
const RECEIVE_MAXIMUM: u16 = 10;
/// How long the client goes on publishing after it exceeded Receive Maximum.
const KEEP_WRITING: Duration = Duration::from_millis(300);
const PATIENCE: Duration = Duration::from_secs(5);

fn broker(extra: &[&str]) -> (TestBroker, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("mqttd.yaml");
    std::fs::write(
        &config,
        format!("limits:\n  receive_maximum: {RECEIVE_MAXIMUM}\n"),
    )
    .unwrap();
    let mut args = vec!["-c", config.to_str().unwrap()];
    args.extend_from_slice(extra);
    (TestBroker::start_with_args(&args), dir)
}

/// QoS 2 publishes with ids 1..=RECEIVE_MAXIMUM + 1 (one too many, none released), then
/// QoS 0 publishes for `KEEP_WRITING`, as a client that does not read while it writes. Over
/// TCP and TLS every write must succeed (the broker reads and discards until the client
/// closes); `stop_at_close` ends the writing quietly at the first failure instead (QUIC: once
/// the DISCONNECT has been delivered, CONNECTION_CLOSE ends the streams).
fn overflow_and_keep_writing(
    stop_at_close: bool,
    mut send: impl FnMut(&Packet) -> Result<(), String>,
) {
    let payload = Bytes::from(vec![b'x'; 512]);
    for id in 1..=RECEIVE_MAXIMUM + 1 {
        let p = raw::publish("close/q2", QoS::ExactlyOnce, Some(id), payload.clone());
        send(&p).unwrap_or_else(|e| panic!("QoS 2 publish {id}: {e}"));
    }
    let start = Instant::now();
    let mut written = 0;
    while start.elapsed() < KEEP_WRITING {
        let p = raw::publish("close/q0", QoS::AtMostOnce, None, payload.clone());
        if let Err(e) = send(&p) {
            if stop_at_close {
                return;
            }
            panic!("publish {written} after the broker closed failed (a reset?): {e}");
        }
        written += 1;
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Reads what the broker sent: PUBRECs, then DISCONNECT 0x93, then a clean end.
fn expect_disconnect_then_end(mut next: impl FnMut() -> Next) {
    let mut pubrecs = 0;
    loop {
        match next() {
            Next::Packet(Packet::PubRec(_)) => pubrecs += 1,
            Next::Packet(Packet::Disconnect(d)) => {
                assert_eq!(d.code, ReasonCode::RECEIVE_MAXIMUM_EXCEEDED);
                break;
            }
            other => panic!("expected PUBRECs then DISCONNECT 0x93, got {other:?}"),
        }
    }
    assert_eq!(
        pubrecs, RECEIVE_MAXIMUM as usize,
        "a PUBREC per accepted QoS 2"
    );
    match next() {
        Next::Eof => {}
        other => panic!("expected a clean end after the DISCONNECT, got {other:?}"),
    }
}

fn stream_case<S: Transport>(mut client: StreamClient<S>) {
    overflow_and_keep_writing(false, |p| {
        client.send(p).map_err(|e| format!("{:?}: {e}", e.kind()))
    });
    expect_disconnect_then_end(|| client.next(PATIENCE));
}

#[test]
fn tcp_client_reads_the_disconnect_after_exceeding_receive_maximum() {
    let (broker, _dir) = broker(&[]);
    let id = common::unique("close-tcp");
    stream_case(StreamClient::tcp(broker.addr, &id, ProtocolVersion::V5));
}

#[test]
fn mqtts_client_reads_the_disconnect_and_close_notify() {
    let (broker, _dir) = broker(&["--mqtts", "127.0.0.1:0"]);
    let (mqtts, ca) = (
        broker.mqtts_addr.unwrap(),
        broker.cert_path.clone().unwrap(),
    );
    let id = common::unique("close-tls");
    let client = StreamClient::tls(mqtts, &ca, &id, ProtocolVersion::V5);
    // rustls reports a close without close_notify as an error (UnexpectedEof), so `Eof`
    // below means the broker sent close_notify.
    stream_case(client);
}

#[test]
fn quic_client_reads_the_disconnect_before_the_connection_closes() {
    let (broker, _dir) = broker(&[]);
    let (addr, ca) = (broker.quic_addr.unwrap(), broker.cert_path.clone().unwrap());
    let id = common::unique("close-quic");
    let mut client = QuicClient::connect(addr, &ca, &id, ProtocolVersion::V5);
    overflow_and_keep_writing(true, |p| client.send(p).map_err(|e| e.to_string()));
    expect_disconnect_then_end(|| client.next(PATIENCE));
    // Then the connection closes with application error 1 (protocol error).
    match client.closed(PATIENCE) {
        Some(quinn::ConnectionError::ApplicationClosed(c)) => {
            assert_eq!(c.error_code, quinn::VarInt::from_u32(1))
        }
        other => panic!("expected CONNECTION_CLOSE with application error 1, got {other:?}"),
    }
}

/// What a client reads when the broker shuts down: DISCONNECT 0x8B Server shutting down, then
/// a clean end.
fn expect_goodbye(transport: &str, mut next: impl FnMut() -> Next) {
    match next() {
        Next::Packet(Packet::Disconnect(d)) => {
            assert_eq!(d.code, ReasonCode::SERVER_SHUTTING_DOWN, "{transport}")
        }
        other => panic!("{transport}: expected DISCONNECT 0x8B, got {other:?}"),
    }
    match next() {
        Next::Eof => {}
        other => panic!("{transport}: expected a clean end after the DISCONNECT, got {other:?}"),
    }
}

/// A broker shutting down (SIGTERM) tells each client why before the process exits: shutdown
/// waits until every connection has written its last packets (`ServerHandle::shutdown`). TCP
/// clients alone: with QUIC connections open, the wait for QUIC to go idle would hide a missing
/// wait.
#[test]
fn tcp_clients_read_the_disconnect_when_the_broker_shuts_down() {
    let (mut broker, _dir) = broker(&[]);
    let mut clients: Vec<_> = (0..8)
        .map(|i| {
            StreamClient::tcp(
                broker.addr,
                &common::unique(&format!("bye-{i}")),
                ProtocolVersion::V5,
            )
        })
        .collect();
    broker.stop();
    for client in &mut clients {
        expect_goodbye("TCP", || client.next(PATIENCE));
    }
}

#[test]
fn quic_clients_read_the_disconnect_when_the_broker_shuts_down() {
    let (mut broker, _dir) = broker(&[]);
    let (addr, ca) = (broker.quic_addr.unwrap(), broker.cert_path.clone().unwrap());
    let mut quic = QuicClient::connect(addr, &ca, &common::unique("bye-quic"), ProtocolVersion::V5);
    broker.stop();
    expect_goodbye("QUIC", || quic.next(PATIENCE));
}
