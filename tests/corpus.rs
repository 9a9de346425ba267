//! Runs the mqtt-seq byte corpus (`shared/mqtt-seq`, see its README.md)
//! against one broker: every case sends raw bytes on a fresh connection
//! and checks the exact bytes the broker answers and whether it closes.
//!
//! Two tests run the whole corpus, each against its own broker:
//! * `corpus_runs_clean` over TCP;
//! * `corpus_runs_clean_over_quic` over MQTT over QUIC in single-stream mode
//!   (mqttd only; skipped with a note for `MQTTD_TEST_BROKER=mosquitto`):
//!   every case, and every `publish` helper, on a fresh QUIC connection
//!   (one shared client endpoint, ALPN `mqtt`, the broker's generated
//!   certificate) whose first bidirectional stream carries exactly the bytes
//!   a TCP connection would. There "closed" means the stream read ends
//!   (FIN or reset) or the connection is closed; when a case expects the
//!   broker to close, the QUIC connection must then also be closed with
//!   application error 0 or 1. Same cases, checks, deviation list and
//!   accounting as over TCP.
//!
//! * Corpus location: `$MQTT_SEQ_DIR`, default `../shared/mqtt-seq` next to
//!   the repository.
//! * `CORPUS_FILTER=substring` runs only the cases whose full name contains it.
//! * `CORPUS_CONCURRENCY` sets how many isolated cases run at once (default
//!   8; 1 runs every case alone in corpus order, as the corpus's origin did).
//! * `CORPUS_BUDGET_SECS` caps the whole run (default 240 s); cases not
//!   started by then count as failures.
//! * Cases listed in `tests/corpus_deviations.md` are known, justified
//!   deviations of `mqttd`: reported, never failing the test. A listed case
//!   that passes is reported too, so the list can be pruned.
//!
//! Checks, following the corpus README:
//! * the default CONNECT's CONNACK is checked by meaning (type 2, return or
//!   reason code 0); so is an expected MQTT 5.0 CONNACK with properties in a
//!   `recv` step (flags and reason code), since CONNACK properties are the
//!   broker's own choice; every other `recv` step must match byte for byte;
//! * `expect_disconnect`: the broker must close within 2 s (over QUIC, then
//!   also the QUIC connection, with application error 0 or 1). For MQTT 5.0 one
//!   unlisted goodbye packet may come first: a DISCONNECT, or a CONNACK with
//!   a reason code >= 0x80 refusing the case's own CONNECT;
//! * otherwise PINGREQ (`C0 00`) must be answered by exactly `D0 00`;
//! * a `publish` step connects client id `helper` at the case's protocol
//!   level, over the case's transport, and completes the QoS flow with
//!   packet id 1;
//! * after all cases the broker process must still run and serve a client.
//!
//! Scheduling: most cases touch no shared broker state and run 8 at a time.
//! Cases that could interfere with others run one at a time afterwards, in
//! corpus order: those with their own CONNECT (fixed client ids, wills,
//! persistent sessions), SUBSCRIBE, retained PUBLISH or a `publish` helper
//! step, and cases whose full name is not unique.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt::Write as _;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use serde_json::Value;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;
use tokio::time::timeout;

use common::{note, BrokerKind, TestBroker};

/// Longest wait for any single read (and for a close or PINGRESP).
const READ_TIMEOUT: Duration = Duration::from_secs(2);
/// Default number of cases in flight at once during the concurrent phase.
const DEFAULT_CONCURRENCY: usize = 8;
/// How long mqttd may take, after accepting TCP, to accept QUIC connections.
const BROKER_QUIC_START_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on the whole corpus run.
const DEFAULT_BUDGET: Duration = Duration::from_secs(240);

// ---------------------------------------------------------------- the corpus

/// One step of a case, as in the corpus README.
#[derive(Clone, Debug)]
enum Step {
    /// Write these bytes.
    Send(Vec<u8>),
    /// Read exactly this many bytes; they must be equal.
    Recv(Vec<u8>),
    /// A helper client publishes `payload` to `topic` at `qos`.
    Publish {
        topic: String,
        qos: u8,
        payload: Vec<u8>,
    },
}

impl Step {
    fn kind(&self) -> &'static str {
        match self {
            Step::Send(_) => "send",
            Step::Recv(_) => "recv",
            Step::Publish { .. } => "publish",
        }
    }
}

#[derive(Clone, Debug)]
struct Case {
    /// Position in corpus order (files sorted by name, then file order).
    order: usize,
    file: String,
    /// `group + " " + name`; also the client id of the default CONNECT.
    full_name: String,
    /// Protocol level: 3 = MQTT 3.1, 4 = 3.1.1, 5 = 5.0.
    ver: u8,
    connect: bool,
    expect_disconnect: bool,
    steps: Vec<Step>,
    /// Safe to run concurrently with other isolated cases.
    isolated: bool,
}

fn corpus_dir() -> PathBuf {
    match std::env::var_os("MQTT_SEQ_DIR").filter(|d| !d.is_empty()) {
        Some(dir) => PathBuf::from(dir),
        None => PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../shared/mqtt-seq")),
    }
}

fn decode_hex(text: &str, context: &str) -> Vec<u8> {
    let digits: String = text.chars().filter(|c| !c.is_whitespace()).collect();
    assert!(
        digits.len().is_multiple_of(2),
        "{context}: odd number of hex digits in {text:?}"
    );
    (0..digits.len())
        .step_by(2)
        .map(|i| {
            u8::from_str_radix(&digits[i..i + 2], 16).unwrap_or_else(|_| {
                panic!("{context}: bad hex {:?} in {text:?}", &digits[i..i + 2])
            })
        })
        .collect()
}

fn bool_field(object: &Value, key: &str, default: bool) -> bool {
    object.get(key).and_then(Value::as_bool).unwrap_or(default)
}

fn load_corpus(dir: &Path) -> Vec<Case> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap_or_else(|e| {
            panic!(
                "cannot read the mqtt-seq corpus at {} ({e}); set MQTT_SEQ_DIR",
                dir.display()
            )
        })
        .map(|entry| entry.expect("read_dir entry").path())
        .filter(|path| path.extension().is_some_and(|ext| ext == "json"))
        .collect();
    files.sort();

    let mut cases = Vec::new();
    for path in files {
        let file = path.file_name().unwrap().to_string_lossy().into_owned();
        let text = std::fs::read_to_string(&path).expect("read corpus file");
        let groups: Vec<Value> = serde_json::from_str(&text)
            .unwrap_or_else(|e| panic!("{file}: not a JSON array of groups: {e}"));
        for group in groups {
            if bool_field(&group, "disable", false) {
                continue;
            }
            let group_name = group["group"].as_str().expect("group name");
            let group_ver = group.get("ver").and_then(Value::as_u64).unwrap_or(4);
            let group_connect = bool_field(&group, "connect", true);
            let group_expect_disconnect = bool_field(&group, "expect_disconnect", true);
            for test in group["tests"].as_array().expect("tests array") {
                if bool_field(test, "disable", false) {
                    continue;
                }
                let full_name = format!("{} {}", group_name, test["name"].as_str().expect("name"));
                let context = format!("{file}: {full_name}");
                let steps = test["msgs"]
                    .as_array()
                    .expect("msgs array")
                    .iter()
                    .map(|msg| parse_step(msg, &context))
                    .collect();
                let ver = test.get("ver").and_then(Value::as_u64).unwrap_or(group_ver);
                assert!((3..=5).contains(&ver), "{context}: unknown ver {ver}");
                cases.push(Case {
                    order: cases.len(),
                    file: file.clone(),
                    full_name,
                    ver: ver as u8,
                    connect: bool_field(test, "connect", group_connect),
                    expect_disconnect: bool_field(
                        test,
                        "expect_disconnect",
                        group_expect_disconnect,
                    ),
                    steps,
                    isolated: false,
                });
            }
        }
    }
    classify_isolation(&mut cases);
    cases
}

fn parse_step(msg: &Value, context: &str) -> Step {
    match msg["type"].as_str() {
        Some("send") => Step::Send(decode_hex(
            msg["payload"].as_str().expect("payload"),
            context,
        )),
        Some("recv") => Step::Recv(decode_hex(
            msg["payload"].as_str().expect("payload"),
            context,
        )),
        Some("publish") => Step::Publish {
            topic: msg["topic"].as_str().expect("topic").to_string(),
            qos: msg["qos"].as_u64().expect("qos") as u8,
            payload: msg["payload"]
                .as_str()
                .expect("payload")
                .as_bytes()
                .to_vec(),
        },
        other => panic!("{context}: unknown step type {other:?}"),
    }
}

/// First bytes of the packets in `stream`, parsed leniently (stops at the
/// first malformed remaining length; a truncated packet still counts).
fn packet_types(stream: &[u8]) -> Vec<u8> {
    let mut types = Vec::new();
    let mut pos = 0;
    while pos < stream.len() {
        let first = stream[pos];
        pos += 1;
        match decode_varint(&stream[pos..]) {
            Some((length, used)) => {
                types.push(first);
                pos += used + length;
            }
            None => {
                types.push(first);
                break;
            }
        }
    }
    types
}

/// Decodes an MQTT variable byte integer: `(value, bytes used)`.
fn decode_varint(bytes: &[u8]) -> Option<(usize, usize)> {
    let mut value = 0usize;
    for (i, byte) in bytes.iter().take(4).enumerate() {
        value += usize::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Some((value, i + 1));
        }
    }
    None
}

/// Marks the cases that touch no state another case could observe.
fn classify_isolation(cases: &mut [Case]) {
    let mut name_count: HashMap<String, usize> = HashMap::new();
    for case in cases.iter() {
        *name_count.entry(case.full_name.clone()).or_default() += 1;
    }
    for case in cases.iter_mut() {
        let sent: Vec<u8> = case
            .steps
            .iter()
            .filter_map(|step| match step {
                Step::Send(bytes) => Some(bytes.as_slice()),
                _ => None,
            })
            .flatten()
            .copied()
            .collect();
        let shares_state = packet_types(&sent).iter().any(|&first| {
            let packet_type = first >> 4;
            let retained_publish = packet_type == 3 && first & 1 == 1;
            packet_type == 1 || packet_type == 8 || retained_publish
        });
        let has_helper = case.steps.iter().any(|s| matches!(s, Step::Publish { .. }));
        case.isolated =
            case.connect && !has_helper && !shares_state && name_count[&case.full_name] == 1;
    }
}

/// The protocol level the connection runs at: the case's `ver` for the
/// default CONNECT, else the level in the case's own first CONNECT.
fn protocol_level(case: &Case) -> u8 {
    if case.connect {
        return case.ver;
    }
    let first_send = case.steps.iter().find_map(|step| match step {
        Step::Send(bytes) => Some(bytes.as_slice()),
        _ => None,
    });
    let level = first_send
        .filter(|b| b.first().is_some_and(|f| f >> 4 == 1))
        .and_then(|b| {
            let (_, used) = decode_varint(&b[1..])?;
            let variable = &b[1 + used..];
            let name_len = usize::from(u16::from_be_bytes([*variable.first()?, *variable.get(1)?]));
            variable.get(2 + name_len).copied()
        });
    level.unwrap_or(case.ver)
}

// ------------------------------------------------------------ wire helpers

fn hex(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(bytes.len() * 3);
    for (i, byte) in bytes.iter().enumerate() {
        if i > 0 {
            out.push(' ');
        }
        let _ = write!(out, "{byte:02X}");
    }
    out
}

fn encode_varint(mut value: usize, out: &mut Vec<u8>) {
    loop {
        let mut byte = (value % 128) as u8;
        value /= 128;
        if value > 0 {
            byte |= 0x80;
        }
        out.push(byte);
        if value == 0 {
            break;
        }
    }
}

fn push_str(out: &mut Vec<u8>, text: &[u8]) {
    out.extend_from_slice(&(text.len() as u16).to_be_bytes());
    out.extend_from_slice(text);
}

fn packet(first_byte: u8, body: &[u8]) -> Vec<u8> {
    let mut out = vec![first_byte];
    encode_varint(body.len(), &mut out);
    out.extend_from_slice(body);
    out
}

/// The corpus's default CONNECT: clean session, keepalive 60, the given
/// client id; MQTT 5.0 adds Receive Maximum = 20.
fn default_connect(ver: u8, client_id: &str) -> Vec<u8> {
    let mut body = Vec::new();
    match ver {
        3 => push_str(&mut body, b"MQIsdp"),
        _ => push_str(&mut body, b"MQTT"),
    }
    body.push(ver);
    body.push(0x02); // clean session / clean start
    body.extend_from_slice(&60u16.to_be_bytes());
    if ver == 5 {
        body.extend_from_slice(&[0x03, 0x21, 0x00, 0x14]);
    }
    push_str(&mut body, client_id.as_bytes());
    packet(0x10, &body)
}

/// How a read ended when it did not get all the bytes it wanted.
#[derive(Debug)]
enum ReadEnd {
    Closed,
    /// Any other error ending the connection (a TCP reset, a QUIC stream reset or a QUIC
    /// connection error other than an application close), described.
    Reset(String),
    Timeout,
}

impl ReadEnd {
    fn describe(&self) -> String {
        match self {
            ReadEnd::Closed => "<connection closed>".into(),
            ReadEnd::Reset(what) => format!("<connection error: {what}>"),
            ReadEnd::Timeout => format!("<timeout after {READ_TIMEOUT:?}>"),
        }
    }
}

/// Reads exactly `n` bytes within `READ_TIMEOUT`; on failure returns what
/// arrived and why it stopped.
async fn read_exact(stream: &mut Wire, n: usize) -> Result<Vec<u8>, (Vec<u8>, ReadEnd)> {
    let deadline = tokio::time::Instant::now() + READ_TIMEOUT;
    let mut buf = vec![0u8; n];
    let mut filled = 0;
    while filled < n {
        match tokio::time::timeout_at(deadline, stream.read(&mut buf[filled..])).await {
            Err(_) => return Err((buf[..filled].to_vec(), ReadEnd::Timeout)),
            Ok(Ok(0)) => return Err((buf[..filled].to_vec(), ReadEnd::Closed)),
            Ok(Ok(read)) => filled += read,
            Ok(Err(e)) => return Err((buf[..filled].to_vec(), read_error_end(&e))),
        }
    }
    Ok(buf)
}

/// Reads one whole MQTT packet (fixed header included).
async fn read_packet(stream: &mut Wire) -> Result<Vec<u8>, (Vec<u8>, ReadEnd)> {
    let first = read_exact(stream, 1).await?;
    read_packet_after(stream, first[0]).await
}

/// Reads the rest of a packet whose first byte was `first`.
async fn read_packet_after(stream: &mut Wire, first: u8) -> Result<Vec<u8>, (Vec<u8>, ReadEnd)> {
    let mut packet = vec![first];
    loop {
        let byte = match read_exact(stream, 1).await {
            Ok(b) => b[0],
            Err((_, end)) => return Err((packet, end)),
        };
        packet.push(byte);
        if byte & 0x80 == 0 || packet.len() == 5 {
            break;
        }
    }
    let Some((length, _)) = decode_varint(&packet[1..]) else {
        // Not a valid remaining length: show what came.
        return Ok(packet);
    };
    match read_exact(stream, length).await {
        Ok(body) => {
            packet.extend_from_slice(&body);
            Ok(packet)
        }
        Err((partial, end)) => {
            packet.extend_from_slice(&partial);
            Err((packet, end))
        }
    }
}

/// `(flags, reason code)` of a complete CONNACK packet.
fn connack_flags_and_reason(packet: &[u8]) -> Option<(u8, u8)> {
    if packet.first() != Some(&0x20) {
        return None;
    }
    let (length, used) = decode_varint(&packet[1..])?;
    let body = &packet[1 + used..];
    (body.len() == length && length >= 2).then(|| (body[0], body[1]))
}

/// An expected MQTT 5.0 CONNACK that carries properties. Those are the
/// broker's own choice (corpus README), so such a step is compared by
/// meaning: the acknowledge flags and the reason code.
fn is_connack_with_properties(expected: &[u8]) -> bool {
    connack_flags_and_reason(expected).is_some() && expected.len() > 4 && expected[4] != 0
}

/// Whatever else arrives within a short moment (for failure messages).
async fn drain_briefly(stream: &mut Wire, mut got: Vec<u8>) -> Vec<u8> {
    let mut buf = [0u8; 256];
    while got.len() < 256 {
        match timeout(Duration::from_millis(100), stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => got.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    got
}

/// Checks a CONNACK by meaning: packet type 2 and return/reason code 0.
fn check_connack(packet: &[u8]) -> Result<(), String> {
    let (_, used) = decode_varint(&packet[1..]).unwrap_or((0, 0));
    let body = &packet[1 + used..];
    if packet[0] != 0x20 || body.len() < 2 || body[1] != 0 {
        return Err(format!(
            "expected CONNACK (20 ..) with return code 00, got {}",
            hex(packet)
        ));
    }
    Ok(())
}

// ------------------------------------------------------------ running a case

/// Why a case failed: where, what was expected, what happened.
#[derive(Debug)]
struct Failure {
    step: String,
    expected: String,
    actual: String,
}

impl Failure {
    fn new(
        step: impl Into<String>,
        expected: impl Into<String>,
        actual: impl Into<String>,
    ) -> Self {
        Failure {
            step: step.into(),
            expected: expected.into(),
            actual: actual.into(),
        }
    }
}

// --------------------------------------------------------------- transports

/// How a case reaches the broker; every client (the case's and a `publish` helper's) gets a
/// fresh connection over it.
#[derive(Clone)]
enum Transport {
    /// MQTT over TCP.
    Tcp(SocketAddr),
    /// MQTT over QUIC in single-stream mode: a fresh QUIC connection per client, MQTT bytes on
    /// its first bidirectional stream exactly as on TCP. One client endpoint serves all cases.
    Quic {
        addr: SocketAddr,
        endpoint: quinn::Endpoint,
    },
}

impl Transport {
    fn name(&self) -> &'static str {
        match self {
            Transport::Tcp(_) => "TCP",
            Transport::Quic { .. } => "QUIC",
        }
    }

    fn addr(&self) -> SocketAddr {
        match self {
            Transport::Tcp(addr) | Transport::Quic { addr, .. } => *addr,
        }
    }

    /// Opens a fresh connection (and, over QUIC, its first bidirectional stream).
    async fn connect(&self) -> Result<Wire, String> {
        match self {
            Transport::Tcp(addr) => {
                let stream = timeout(READ_TIMEOUT, TcpStream::connect(addr))
                    .await
                    .map_err(|_| format!("TCP connect to {addr} timed out"))?
                    .map_err(|e| format!("TCP connect to {addr}: {e}"))?;
                let _ = stream.set_nodelay(true);
                Ok(Wire {
                    io: Box::new(stream),
                    quic: None,
                })
            }
            Transport::Quic { addr, endpoint } => {
                let connecting = endpoint
                    .connect(*addr, "localhost")
                    .map_err(|e| format!("QUIC connect to {addr}: {e}"))?;
                let connection = timeout(READ_TIMEOUT, connecting)
                    .await
                    .map_err(|_| format!("QUIC handshake with {addr} timed out"))?
                    .map_err(|e| format!("QUIC handshake with {addr}: {e}"))?;
                // quinn opens the stream lazily: the broker sees it with the first bytes written.
                let (send, recv) = timeout(READ_TIMEOUT, connection.open_bi())
                    .await
                    .map_err(|_| format!("QUIC open_bi to {addr} timed out"))?
                    .map_err(|e| format!("QUIC open_bi to {addr}: {e}"))?;
                Ok(Wire {
                    io: Box::new(tokio::io::join(recv, send)),
                    quic: Some(connection),
                })
            }
        }
    }
}

/// A quinn client endpoint trusting the certificate mqttd generated (server name `localhost`,
/// ALPN `mqtt`, TLS 1.3 on the ring provider).
fn quic_client_endpoint(cert_path: &Path) -> quinn::Endpoint {
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_file_iter(cert_path)
        .unwrap_or_else(|e| panic!("read the broker certificate {}: {e}", cert_path.display()))
    {
        roots
            .add(cert.expect("a PEM certificate"))
            .expect("a usable root certificate");
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 with the ring provider")
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"mqtt".to_vec()];
    let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).expect("QUIC TLS config");
    let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap())
        .expect("bind the QUIC client endpoint");
    endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
    endpoint
}

/// A bidirectional byte stream.
trait ByteStream: AsyncRead + AsyncWrite + Unpin + Send {}

impl<T: AsyncRead + AsyncWrite + Unpin + Send> ByteStream for T {}

/// One client's byte stream to the broker: a TCP connection, or a QUIC connection's first
/// bidirectional stream (quinn's `RecvStream`/`SendStream` implement tokio's
/// `AsyncRead`/`AsyncWrite`; `tokio::io::join` pairs them).
struct Wire {
    io: Box<dyn ByteStream>,
    /// QUIC only: the connection the stream belongs to.
    quic: Option<quinn::Connection>,
}

impl AsyncRead for Wire {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_read(cx, buf)
    }
}

impl AsyncWrite for Wire {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut *self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut *self.io).poll_shutdown(cx)
    }
}

/// How a failed read ended. Over QUIC the broker closing the connection (an application
/// close, after it finished the stream) is a close, like a TCP FIN; a stream reset or any
/// other connection error is described.
fn read_error_end(error: &std::io::Error) -> ReadEnd {
    match error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<quinn::ReadError>())
    {
        Some(quinn::ReadError::ConnectionLost(quinn::ConnectionError::ApplicationClosed(_))) => {
            ReadEnd::Closed
        }
        Some(quic) => ReadEnd::Reset(format!("QUIC {quic}")),
        None => ReadEnd::Reset(error.kind().to_string()),
    }
}

/// Over QUIC, once the MQTT connection is over, the broker must also close the QUIC
/// connection, with application error 0 (normal) or 1 (protocol error).
async fn expect_quic_connection_closed(quic: Option<&quinn::Connection>) -> Result<(), Failure> {
    const STEP: &str = "final check (QUIC connection closed)";
    const EXPECTED: &str = "QUIC connection closed with application error 0 or 1";
    let Some(connection) = quic else {
        return Ok(());
    };
    match timeout(READ_TIMEOUT, connection.closed()).await {
        Ok(quinn::ConnectionError::ApplicationClosed(close))
            if close.error_code.into_inner() <= 1 =>
        {
            Ok(())
        }
        Ok(other) => Err(Failure::new(STEP, EXPECTED, format!("<{other}>"))),
        Err(_) => Err(Failure::new(
            STEP,
            EXPECTED,
            format!(
                "MQTT stream ended but the QUIC connection is still open after {READ_TIMEOUT:?}"
            ),
        )),
    }
}

async fn run_case(transport: &Transport, case: &Case) -> Result<(), Failure> {
    let mut stream = transport
        .connect()
        .await
        .map_err(|e| Failure::new("connect", format!("a {} connection", transport.name()), e))?;

    if case.connect {
        let connect = default_connect(case.ver, &case.full_name);
        let _ = stream.write_all(&connect).await;
        let connack = read_packet(&mut stream).await.map_err(|(got, end)| {
            Failure::new(
                "default CONNECT",
                "CONNACK with return code 00",
                format!("{} {}", hex(&got), end.describe()),
            )
        })?;
        check_connack(&connack).map_err(|e| Failure::new("default CONNECT", "CONNACK 00", e))?;
    }

    for (index, step) in case.steps.iter().enumerate() {
        let label = format!("step {index} ({})", step.kind());
        match step {
            Step::Send(bytes) => {
                // A write can fail once the broker has closed the connection;
                // what matters is what the following reads observe.
                let _ = stream.write_all(bytes).await;
            }
            Step::Recv(expected) if is_connack_with_properties(expected) => {
                let wanted = format!("{} (compared by flags and reason code only)", hex(expected));
                match read_packet(&mut stream).await {
                    Ok(got)
                        if connack_flags_and_reason(&got) == connack_flags_and_reason(expected) => {
                    }
                    Ok(got) => return Err(Failure::new(label, wanted, hex(&got))),
                    Err((got, end)) => {
                        return Err(Failure::new(
                            label,
                            wanted,
                            format!("{} {}", hex(&got), end.describe()),
                        ))
                    }
                }
            }
            Step::Recv(expected) => match read_exact(&mut stream, expected.len()).await {
                Ok(got) if &got == expected => {}
                Ok(got) => return Err(Failure::new(label, hex(expected), hex(&got))),
                Err((got, end)) => {
                    return Err(Failure::new(
                        label,
                        hex(expected),
                        format!("{} {}", hex(&got), end.describe()),
                    ))
                }
            },
            Step::Publish {
                topic,
                qos,
                payload,
            } => helper_publish(transport, case.ver, topic, *qos, payload)
                .await
                .map_err(|e| Failure::new(label, "helper publish completes", e))?,
        }
    }

    if case.expect_disconnect {
        expect_closed(&mut stream, protocol_level(case), !case.connect).await?;
        expect_quic_connection_closed(stream.quic.as_ref()).await
    } else {
        expect_pingresp(&mut stream).await
    }
}

/// The broker must close the connection. An MQTT 5.0 broker may say goodbye
/// first with one packet the case does not list: a DISCONNECT with a reason
/// code, or, when the case sent its own CONNECT, a CONNACK refusing it with a
/// reason code of 0x80 or more ([MQTT-3.2.2-7], [MQTT-4.13.1-1]).
async fn expect_closed(stream: &mut Wire, ver: u8, own_connect: bool) -> Result<(), Failure> {
    const STEP: &str = "final check (connection closed)";
    let still_open = || format!("still open after {READ_TIMEOUT:?}");
    let first = match read_exact(stream, 1).await {
        Ok(byte) => byte[0],
        Err((_, ReadEnd::Closed | ReadEnd::Reset(_))) => return Ok(()),
        Err((_, ReadEnd::Timeout)) => {
            return Err(Failure::new(STEP, "connection closed", still_open()))
        }
    };
    let goodbye_allowed = ver == 5 && (first == 0xE0 || (own_connect && first == 0x20));
    if !goodbye_allowed {
        let got = drain_briefly(stream, vec![first]).await;
        return Err(Failure::new(
            STEP,
            "connection closed",
            format!("received {}", hex(&got)),
        ));
    }
    let goodbye = match read_packet_after(stream, first).await {
        Ok(packet) => packet,
        // Closed in the middle of the goodbye packet: closed all the same.
        Err((_, ReadEnd::Closed | ReadEnd::Reset(_))) => return Ok(()),
        Err((got, ReadEnd::Timeout)) => {
            return Err(Failure::new(
                STEP,
                "connection closed",
                format!("received {} then {}", hex(&got), still_open()),
            ))
        }
    };
    if first == 0x20 && connack_flags_and_reason(&goodbye).is_none_or(|(_, reason)| reason < 0x80) {
        return Err(Failure::new(
            STEP,
            "connection closed",
            format!(
                "received {} (a CONNACK accepting the connection)",
                hex(&goodbye)
            ),
        ));
    }
    match read_exact(stream, 1).await {
        Err((_, ReadEnd::Closed | ReadEnd::Reset(_))) => Ok(()),
        Err((_, ReadEnd::Timeout)) => Err(Failure::new(
            STEP,
            "connection closed",
            format!("received {} then {}", hex(&goodbye), still_open()),
        )),
        Ok(next) => {
            let got = drain_briefly(stream, next).await;
            Err(Failure::new(
                STEP,
                "connection closed",
                format!("received {} then {}", hex(&goodbye), hex(&got)),
            ))
        }
    }
}

/// The connection must still be up: PINGREQ gets PINGRESP.
async fn expect_pingresp(stream: &mut Wire) -> Result<(), Failure> {
    const STEP: &str = "final check (PINGREQ -> PINGRESP)";
    if let Err(e) = stream.write_all(&[0xC0, 0x00]).await {
        return Err(Failure::new(STEP, "D0 00", format!("<write failed: {e}>")));
    }
    match read_exact(stream, 2).await {
        Ok(got) if got == [0xD0, 0x00] => Ok(()),
        Ok(got) => {
            let got = drain_briefly(stream, got).await;
            Err(Failure::new(STEP, "D0 00", hex(&got)))
        }
        Err((got, end)) => Err(Failure::new(
            STEP,
            "D0 00",
            format!("{} {}", hex(&got), end.describe()),
        )),
    }
}

/// The `publish` step: client id `helper` connects at the case's protocol
/// level over the case's transport, publishes with packet id 1, completes the QoS flow and
/// disconnects.
async fn helper_publish(
    transport: &Transport,
    ver: u8,
    topic: &str,
    qos: u8,
    payload: &[u8],
) -> Result<(), String> {
    let mut stream = transport
        .connect()
        .await
        .map_err(|e| format!("helper: {e}"))?;
    let describe = |what: &str, (got, end): (Vec<u8>, ReadEnd)| {
        format!(
            "helper: waiting for {what}: got {} {}",
            hex(&got),
            end.describe()
        )
    };
    stream
        .write_all(&default_connect(ver, "helper"))
        .await
        .map_err(|e| format!("helper: write CONNECT: {e}"))?;
    let connack = read_packet(&mut stream)
        .await
        .map_err(|e| describe("CONNACK", e))?;
    check_connack(&connack).map_err(|e| format!("helper: {e}"))?;

    let mut body = Vec::new();
    push_str(&mut body, topic.as_bytes());
    if qos > 0 {
        body.extend_from_slice(&1u16.to_be_bytes());
    }
    if ver == 5 {
        body.push(0); // no properties
    }
    body.extend_from_slice(payload);
    let mut out = packet(0x30 | (qos << 1), &body);

    let expect_ack = |packet: &[u8], first_byte: u8, name: &str| -> Result<(), String> {
        let ok = packet.len() >= 4
            && packet[0] == first_byte
            && packet[2..4] == [0x00, 0x01]
            && packet.get(4).is_none_or(|&reason| reason < 0x80);
        if ok {
            Ok(())
        } else {
            Err(format!(
                "helper: expected a successful {name} for packet id 1, got {}",
                hex(packet)
            ))
        }
    };
    match qos {
        0 => {}
        1 => {
            stream.write_all(&out).await.map_err(|e| e.to_string())?;
            out.clear();
            let ack = read_packet(&mut stream)
                .await
                .map_err(|e| describe("PUBACK", e))?;
            expect_ack(&ack, 0x40, "PUBACK")?;
        }
        2 => {
            stream.write_all(&out).await.map_err(|e| e.to_string())?;
            out.clear();
            let rec = read_packet(&mut stream)
                .await
                .map_err(|e| describe("PUBREC", e))?;
            expect_ack(&rec, 0x50, "PUBREC")?;
            stream
                .write_all(&[0x62, 0x02, 0x00, 0x01])
                .await
                .map_err(|e| e.to_string())?;
            let comp = read_packet(&mut stream)
                .await
                .map_err(|e| describe("PUBCOMP", e))?;
            expect_ack(&comp, 0x70, "PUBCOMP")?;
        }
        other => return Err(format!("helper: unsupported qos {other}")),
    }
    out.extend_from_slice(&[0xE0, 0x00]); // QoS 0 PUBLISH (if any) + DISCONNECT
    stream
        .write_all(&out)
        .await
        .map_err(|e| format!("helper: write: {e}"))?;
    let _ = stream.shutdown().await;
    if let Some(connection) = &stream.quic {
        // Dropping the last handle closes a QUIC connection at once, discarding stream data
        // not yet delivered: wait for the broker to close it after the DISCONNECT instead.
        timeout(READ_TIMEOUT, connection.closed())
            .await
            .map_err(|_| {
                format!("helper: QUIC connection still open {READ_TIMEOUT:?} after DISCONNECT")
            })?;
    }
    Ok(())
}

// ------------------------------------------------------- deviations and run

/// A documented deviation: the answer mqttd gives instead (the start of the runner's "actual"
/// text at the failing step) and why the spec supports it.
struct Deviation {
    answer: String,
    reason: String,
}

/// Deviations from `tests/corpus_deviations.md`: every line of the form
/// ``- `FULL NAME` `OUR ANSWER`: reason with spec clause``. The answer keeps the entry honest:
/// a listed case whose actual answer differs from it fails like any other.
fn load_deviations() -> BTreeMap<String, Deviation> {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/corpus_deviations.md");
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("read {path}: {e}"));
    let mut deviations = BTreeMap::new();
    for line in text.lines() {
        let Some(rest) = line.strip_prefix("- `") else {
            continue;
        };
        let Some(end) = rest.find('`') else {
            panic!("{path}: unterminated case name in line {line:?}");
        };
        let name = &rest[..end];
        let after = rest[end + 1..].trim_start();
        let Some(answer_rest) = after.strip_prefix('`') else {
            panic!("{path}: deviation {name:?} needs our answer as a second code span");
        };
        let Some(answer_end) = answer_rest.find('`') else {
            panic!("{path}: unterminated answer in line {line:?}");
        };
        let answer = answer_rest[..answer_end].to_string();
        let reason = answer_rest[answer_end + 1..]
            .trim()
            .trim_start_matches([':', '-', '—'])
            .trim();
        assert!(
            !reason.is_empty() && reason.contains("MQTT"),
            "{path}: deviation {name:?} needs a reason with its spec clause"
        );
        deviations.insert(
            name.to_string(),
            Deviation {
                answer,
                reason: reason.to_string(),
            },
        );
    }
    deviations
}

enum Outcome {
    Passed,
    Failed(Failure),
}

async fn run_one(transport: &Transport, case: &Case, deadline: Instant) -> Outcome {
    if Instant::now() >= deadline {
        return Outcome::Failed(Failure::new(
            "not run",
            "case runs",
            "corpus time budget exhausted (CORPUS_BUDGET_SECS)",
        ));
    }
    // Belt and braces: every read is bounded, but cap the case as a whole too.
    // A QUIC client also waits for its handshake and for the broker's QUIC close.
    let quic_factor = if matches!(transport, Transport::Quic { .. }) {
        2
    } else {
        1
    };
    let reads = (case.steps.len() as u32 + 4) * quic_factor;
    match timeout(READ_TIMEOUT * reads, run_case(transport, case)).await {
        Ok(Ok(())) => Outcome::Passed,
        Ok(Err(failure)) => Outcome::Failed(failure),
        Err(_) => Outcome::Failed(Failure::new(
            "whole case",
            "case finishes",
            "case timed out",
        )),
    }
}

/// Broker still serving after the corpus: a fresh client connects and pings.
async fn broker_still_serves(transport: &Transport) -> Result<(), String> {
    let mut stream = transport.connect().await?;
    stream
        .write_all(&default_connect(4, "corpus-final-liveness-check"))
        .await
        .map_err(|e| e.to_string())?;
    let connack = read_packet(&mut stream)
        .await
        .map_err(|(got, end)| format!("CONNACK: {} {}", hex(&got), end.describe()))?;
    check_connack(&connack)?;
    expect_pingresp(&mut stream)
        .await
        .map_err(|f| format!("{}: expected {}, got {}", f.step, f.expected, f.actual))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_runs_clean() {
    let broker = TestBroker::start();
    let transport = Transport::Tcp(broker.addr);
    run_corpus(broker, transport).await;
}

/// The same corpus, cases, deviations and accounting over QUIC single-stream mode: every case
/// (and every `publish` helper) on a fresh QUIC connection's first bidirectional stream. On
/// top of the TCP checks, a case that expects the broker to close must also see the QUIC
/// connection closed with application error 0 or 1.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn corpus_runs_clean_over_quic() {
    let kind = BrokerKind::from_env();
    if kind != BrokerKind::Mqttd {
        note(format!(
            "corpus over QUIC: skipped, MQTT over QUIC is an mqttd feature and the broker under test is {kind:?}"
        ));
        return;
    }
    let broker = TestBroker::start();
    let addr = broker
        .quic_addr
        .expect("mqttd is started with a QUIC listener");
    let cert_path = broker
        .cert_path
        .clone()
        .expect("mqttd has a certificate path");
    // `TestBroker::start` waits for TCP only; mqttd generates its certificate and binds the
    // QUIC listener a moment later.
    let cert_deadline = Instant::now() + BROKER_QUIC_START_TIMEOUT;
    while !cert_path.exists() {
        assert!(
            Instant::now() < cert_deadline,
            "mqttd did not write its certificate {} within {BROKER_QUIC_START_TIMEOUT:?}",
            cert_path.display()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let endpoint = quic_client_endpoint(&cert_path);
    let transport = Transport::Quic {
        addr,
        endpoint: endpoint.clone(),
    };
    let mut last_error = String::new();
    while Instant::now() < cert_deadline + READ_TIMEOUT {
        match transport.connect().await {
            Ok(_probe) => {
                last_error.clear();
                break;
            }
            Err(e) => {
                last_error = e;
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
    assert!(
        last_error.is_empty(),
        "mqttd does not accept QUIC connections on {addr}: {last_error}"
    );
    run_corpus(broker, transport).await;
    endpoint.close(0u32.into(), b"done");
}

/// Runs the corpus against `broker` over `transport` and reports; panics on failures.
async fn run_corpus(mut broker: TestBroker, transport: Transport) {
    let over = transport.name();
    let dir = corpus_dir();
    let mut cases = load_corpus(&dir);
    let total_in_corpus = cases.len();
    assert!(total_in_corpus > 0, "no cases in {}", dir.display());
    if let Ok(filter) = std::env::var("CORPUS_FILTER") {
        cases.retain(|case| case.full_name.contains(&filter));
        assert!(
            !cases.is_empty(),
            "CORPUS_FILTER={filter:?} matches no case"
        );
    }
    let deviations = load_deviations();
    let budget = std::env::var("CORPUS_BUDGET_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .map(Duration::from_secs)
        .unwrap_or(DEFAULT_BUDGET);

    let addr = transport.addr();
    let started = Instant::now();
    let deadline = started + budget;

    let concurrency = std::env::var("CORPUS_CONCURRENCY")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|&n| n > 0)
        .unwrap_or(DEFAULT_CONCURRENCY);
    // With a concurrency of 1 every case runs alone, in corpus order.
    let (isolated, shared): (Vec<Case>, Vec<Case>) = cases
        .iter()
        .cloned()
        .partition(|c| c.isolated && concurrency > 1);
    println!(
        "corpus over {over}: {} of {} cases from {} against {:?} at {addr}: {} concurrently ({concurrency} at a time), then {} one at a time",
        cases.len(),
        total_in_corpus,
        dir.display(),
        broker.kind,
        isolated.len(),
        shared.len()
    );

    let mut outcomes: BTreeMap<usize, Outcome> = BTreeMap::new();

    // Phase 1: isolated cases, bounded concurrency.
    let permits = Arc::new(Semaphore::new(concurrency));
    let mut tasks = JoinSet::new();
    for case in isolated {
        let permits = Arc::clone(&permits);
        let transport = transport.clone();
        tasks.spawn(async move {
            let _permit = permits.acquire_owned().await.expect("semaphore");
            (case.order, run_one(&transport, &case, deadline).await)
        });
    }
    while let Some(joined) = tasks.join_next().await {
        let (order, outcome) = joined.expect("case task panicked");
        outcomes.insert(order, outcome);
    }
    let phase1 = started.elapsed();

    // Phase 2: cases that share broker state, one at a time in corpus order.
    for case in &shared {
        outcomes.insert(case.order, run_one(&transport, case, deadline).await);
    }
    println!(
        "corpus over {over}: ran in {:.1?} (concurrent phase {:.1?})",
        started.elapsed(),
        phase1
    );

    let liveness = match broker.check_running() {
        Ok(()) => broker_still_serves(&transport).await,
        Err(e) => Err(e),
    };

    // Report.
    let by_order: HashMap<usize, &Case> = cases.iter().map(|c| (c.order, c)).collect();
    let mut passed = 0;
    let mut failed = Vec::new();
    let mut documented = Vec::new();
    let mut now_passing = Vec::new();
    let mut seen_names = HashSet::new();
    for (order, outcome) in &outcomes {
        let case = by_order[order];
        seen_names.insert(case.full_name.as_str());
        let deviation = deviations.get(&case.full_name);
        match outcome {
            Outcome::Passed => {
                passed += 1;
                if deviation.is_some() {
                    now_passing.push(case);
                }
            }
            // Documented only while the broker still gives the documented answer.
            Outcome::Failed(failure)
                if deviation
                    .is_some_and(|d| failure.actual.trim_start().starts_with(&d.answer)) =>
            {
                documented.push((case, failure))
            }
            Outcome::Failed(failure) => failed.push((case, failure)),
        }
    }

    let line = |case: &Case, failure: &Failure| {
        format!(
            "  [{}] {:?} (protocol level {}) at {}:\n      expected: {}\n      actual:   {}",
            case.file,
            case.full_name,
            protocol_level(case),
            failure.step,
            failure.expected,
            failure.actual
        )
    };
    if !documented.is_empty() {
        println!("documented deviations over {over} (tests/corpus_deviations.md):");
        for (case, failure) in &documented {
            println!(
                "{}\n      why:      {}",
                line(case, failure),
                deviations[&case.full_name].reason
            );
        }
    }
    for case in &now_passing {
        println!(
            "WARNING: documented deviation now passes, remove it from tests/corpus_deviations.md: {:?}",
            case.full_name
        );
    }
    if std::env::var("CORPUS_FILTER").is_err() {
        for name in deviations
            .keys()
            .filter(|n| !seen_names.contains(n.as_str()))
        {
            println!(
                "WARNING: tests/corpus_deviations.md lists {name:?}, which is not a corpus case"
            );
        }
    }
    if !failed.is_empty() {
        println!("FAILURES over {over}:");
        for (case, failure) in &failed {
            println!("{}", line(case, failure));
        }
    }
    println!(
        "corpus over {over}: {} passed, {} failed, {} documented deviations",
        passed,
        failed.len(),
        documented.len()
    );

    if let Err(e) = &liveness {
        println!("broker liveness check over {over} after the corpus FAILED: {e}");
    }
    assert!(
        failed.is_empty() && liveness.is_ok(),
        "{} corpus case(s) failed over {over}{} (details above; rerun one with CORPUS_FILTER=<name>)",
        failed.len(),
        if liveness.is_ok() {
            ""
        } else {
            " and the broker stopped serving"
        }
    );
}
