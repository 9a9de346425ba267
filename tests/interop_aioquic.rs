//! Interoperability of MQTT over QUIC with an independent QUIC stack: aioquic
//! (Python), driven by `tests/interop/quic_*.py` with the test venv's Python
//! (see `tests/run-all.sh`; `tests/interop/requirements.txt` pins aioquic).
//!
//! Each test starts its own broker and runs a group of named checks of one
//! script against its QUIC listener (verifying the generated certificate,
//! server name `localhost`) and, for cross-transport checks, its TCP
//! listener. A script prints `ok <check>` per passed check and stops at the
//! first failure with `FAIL <check>: <reason>`; its whole output (and the
//! broker log) is shown when a test fails. The checks are described in the
//! scripts:
//!
//! - `quic_single_stream.py`: handshake (QUIC v1, TLS 1.3, ALPN `mqtt` /
//!   `mqttv5`, wrong ALPN refused), connection close codes, and QoS, retained,
//!   will and persistent sessions over the control stream (3.1.1 and 5.0);
//! - `quic_multi_stream.py`: implicit multi-stream rules (data streams,
//!   unidirectional streams, stream errors, keep alive);
//! - `quic_cross_transport.py`: QUIC and TCP clients together (messages, wills,
//!   session takeover both ways).
//!
//! The server never opening a stream toward the client is checked after every
//! check, for every QUIC connection.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::{note, run_python, BrokerKind, TestBroker};

/// Upper bound for one group of checks (the scripts' own watchdog fires at 22 s).
const SCRIPT_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the broker may take to write its generated certificate.
const CERT_TIMEOUT: Duration = Duration::from_secs(5);

fn run_checks(script: &str, checks: &[&str]) {
    let broker = TestBroker::start();
    if broker.kind != BrokerKind::Mqttd {
        note(format!(
            "{script}: MQTT over QUIC is an mqttd feature; nothing to run against {:?}",
            broker.kind
        ));
        return;
    }
    let quic_addr = broker
        .quic_addr
        .expect("mqttd is started with a QUIC listener");
    let cert_path = broker
        .cert_path
        .clone()
        .expect("mqttd has a certificate path");
    wait_for_file(&cert_path);

    let host = quic_addr.ip().to_string();
    let port = quic_addr.port().to_string();
    let tcp_port = broker.port();
    let cafile = cert_path.to_string_lossy().into_owned();
    let mut args = vec![
        "--host",
        host.as_str(),
        "--port",
        port.as_str(),
        "--cafile",
        cafile.as_str(),
        "--tcp-port",
        tcp_port.as_str(),
    ];
    args.extend_from_slice(checks);
    let output = run_python(script, &args, SCRIPT_TIMEOUT);
    note(output.stdout.trim_end());
    assert!(
        output.success(),
        "aioquic checks {checks:?} of {script} failed:\n{}",
        output.describe()
    );
}

fn wait_for_file(path: &Path) {
    let deadline = Instant::now() + CERT_TIMEOUT;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "the broker did not write its certificate {} within {CERT_TIMEOUT:?}",
            path.display()
        );
        thread::sleep(Duration::from_millis(20));
    }
}

macro_rules! aioquic_tests {
    ($script:literal: $($name:ident => [$($check:literal),+ $(,)?]),+ $(,)?) => {
        $(
            #[test]
            fn $name() {
                run_checks($script, &[$($check),+]);
            }
        )+
    };
}

aioquic_tests! { "quic_single_stream.py":
    single_stream_handshake_and_close => [
        "alpn-mqtt",
        "alpn-mqttv5",
        "wrong-alpn-refused",
        "disconnect-closes-with-0",
        "v5-protocol-error-disconnect-0x81-then-close-1",
        "v311-protocol-error-close-1",
        "connect-must-be-first",
        "control-stream-fin-closes-with-1",
        "control-stream-reset-closes-with-1",
    ],
    single_stream_v311 => [
        "v311-qos-round-trips",
        "v311-retained",
        "v311-will-on-abrupt-close",
        "v311-persistent-session",
    ],
    single_stream_v5 => [
        "v5-qos-round-trips",
        "v5-retained",
        "v5-will-on-abrupt-close",
        "v5-persistent-session",
    ],
}

aioquic_tests! { "quic_multi_stream.py":
    multi_stream_data_streams_read_after_connack => [
        "data-stream-same-flight-as-connect",
        "data-stream-before-connect-waits",
    ],
    multi_stream_traffic_bound_to_data_stream => [
        "delivery-qos1-acked-on-data-stream",
        "delivery-qos2-acked-on-data-stream",
        "publish-acked-on-data-stream",
        "same-filter-on-two-streams",
        "unsubscribe-other-stream-0x11",
        "pingreq-on-data-stream",
        "v311-data-streams",
    ],
    multi_stream_data_stream_errors_and_fin => [
        "connect-on-data-stream-ends-it-only",
        "malformed-on-data-stream-ends-it-only",
        "qos3-publish-on-data-stream-ends-it-only",
        "data-stream-fin-ends-its-subscriptions",
        "data-stream-fin-moves-inflight-to-control",
    ],
    multi_stream_unidirectional_streams => [
        "uni-stream-publish-acked-on-control",
        "uni-stream-subscribe-answered-on-control",
    ],
    multi_stream_keep_alive => [
        "keep-alive-counts-data-stream-packets",
        "keep-alive-expiry-closes-with-1",
    ],
}

aioquic_tests! { "quic_cross_transport.py":
    cross_transport_messages => [
        "tcp-publish-reaches-quic",
        "quic-publish-reaches-tcp",
        "tcp-and-quic-data-stream",
        "quic-will-reaches-tcp",
    ],
    cross_transport_session_takeover => [
        "v5-takeover-tcp-by-quic",
        "v311-takeover-tcp-by-quic",
        "v5-takeover-quic-by-tcp",
    ],
}
