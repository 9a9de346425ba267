//! Raw MQTT clients for tests that need control over every byte and every moment: blocking
//! clients over TCP, TLS (MQTTS) and a QUIC stream, built on the crate's codec and nothing of
//! its client. Each QUIC client has its own endpoint and runtime, whose worker puts a write on
//! the wire at once while the test thread does something else (spins, sleeps).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use mqttd::codec::{
    self, Connect, Packet, Properties, ProtocolVersion, Publish, QoS, Subscribe,
    SubscriptionOptions,
};
use rustls::pki_types::pem::PemObject;

/// What a read brought.
#[derive(Debug)]
pub enum Next {
    Packet(Packet),
    /// The server closed its side cleanly (FIN; on TLS, close_notify; on QUIC, the stream's
    /// FIN).
    Eof,
    /// Nothing within the time given.
    Timeout,
    /// A reset, or a close without close_notify, or a QUIC connection error.
    Failed(String),
}

impl Next {
    pub fn packet(self) -> Option<Packet> {
        match self {
            Next::Packet(p) => Some(p),
            _ => None,
        }
    }
}

pub fn encode(packet: &Packet, version: ProtocolVersion) -> BytesMut {
    let mut out = BytesMut::new();
    codec::encode(packet, version, &mut out);
    out
}

pub fn connect(client_id: &str, version: ProtocolVersion) -> Packet {
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

pub fn subscribe(filter: &str, qos: QoS, packet_id: u16) -> Packet {
    Packet::Subscribe(Subscribe {
        packet_id,
        properties: Properties::default(),
        filters: vec![(
            filter.into(),
            SubscriptionOptions {
                qos,
                ..Default::default()
            },
        )],
    })
}

pub fn publish(topic: &str, qos: QoS, packet_id: Option<u16>, payload: Bytes) -> Packet {
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

/// The acknowledgement a QoS 1 delivery needs, if any.
pub fn ack_for(packet: &Packet) -> Option<Packet> {
    match packet {
        Packet::Publish(p) if p.qos == QoS::AtLeastOnce => {
            p.packet_id.map(|id| Packet::PubAck(codec::Ack::new(id)))
        }
        _ => None,
    }
}

/// A byte stream whose reads can time out.
pub trait Transport: Read + Write {
    fn set_patience(&mut self, patience: Duration) -> std::io::Result<()>;
}

impl Transport for TcpStream {
    fn set_patience(&mut self, patience: Duration) -> std::io::Result<()> {
        self.set_read_timeout(Some(patience))
    }
}

pub type TlsStream = rustls::StreamOwned<rustls::ClientConnection, TcpStream>;

impl Transport for TlsStream {
    fn set_patience(&mut self, patience: Duration) -> std::io::Result<()> {
        self.sock.set_read_timeout(Some(patience))
    }
}

/// A blocking MQTT connection over TCP or TLS.
pub struct StreamClient<S: Transport> {
    pub io: S,
    buf: BytesMut,
    pub version: ProtocolVersion,
}

impl StreamClient<TcpStream> {
    /// Connects over TCP and completes the MQTT CONNECT.
    pub fn tcp(addr: SocketAddr, id: &str, version: ProtocolVersion) -> Self {
        let socket = TcpStream::connect(addr).expect("TCP connect");
        socket.set_nodelay(true).unwrap();
        StreamClient::mqtt_connect(socket, id, version)
    }
}

impl StreamClient<TlsStream> {
    /// Connects over TLS 1.3, trusting the PEM certificate at `ca`, and completes CONNECT.
    pub fn tls(addr: SocketAddr, ca: &Path, id: &str, version: ProtocolVersion) -> Self {
        let config = tls_client_config(ca, b"mqtt");
        let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
        let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
        let socket = TcpStream::connect(addr).expect("TCP connect");
        socket.set_nodelay(true).unwrap();
        StreamClient::mqtt_connect(rustls::StreamOwned::new(conn, socket), id, version)
    }
}

impl<S: Transport> StreamClient<S> {
    fn mqtt_connect(io: S, id: &str, version: ProtocolVersion) -> Self {
        let mut client = StreamClient {
            io,
            buf: BytesMut::new(),
            version,
        };
        client.send(&connect(id, version)).expect("send CONNECT");
        match client.next(Duration::from_secs(5)) {
            Next::Packet(Packet::ConnAck(a)) if a.code.0 == 0 => client,
            other => panic!("{id}: expected CONNACK, got {other:?}"),
        }
    }

    pub fn send(&mut self, packet: &Packet) -> std::io::Result<()> {
        self.io.write_all(&encode(packet, self.version))?;
        self.io.flush()
    }

    /// The next packet, or how the stream ended, or `Timeout` after `patience`.
    pub fn next(&mut self, patience: Duration) -> Next {
        let deadline = Instant::now() + patience;
        loop {
            match codec::decode(&mut self.buf, Some(self.version), u32::MAX) {
                Ok(Some(p)) => return Next::Packet(p),
                Ok(None) => {}
                Err(e) => return Next::Failed(format!("undecodable bytes: {e}")),
            }
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return Next::Timeout;
            };
            if let Err(e) = self.io.set_patience(left.max(Duration::from_millis(1))) {
                return Next::Failed(e.to_string());
            }
            let mut chunk = [0u8; 4096];
            match self.io.read(&mut chunk) {
                Ok(0) => return Next::Eof,
                Ok(n) => self.buf.extend_from_slice(&chunk[..n]),
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Next::Timeout
                }
                Err(e) => return Next::Failed(format!("{:?}: {e}", e.kind())),
            }
        }
    }
}

/// A rustls client configuration for TLS 1.3 that trusts the PEM certificate(s) at `ca`.
pub fn tls_client_config(ca: &Path, alpn: &[u8]) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    for c in rustls::pki_types::CertificateDer::pem_file_iter(ca).expect("read the CA file") {
        roots.add(c.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![alpn.to_vec()];
    tls
}

/// One MQTT connection over a QUIC stream (single-stream mode), blocking.
pub struct QuicClient {
    runtime: tokio::runtime::Runtime,
    send: quinn::SendStream,
    recv: quinn::RecvStream,
    buf: BytesMut,
    pub version: ProtocolVersion,
    pub conn: quinn::Connection,
    _endpoint: quinn::Endpoint,
}

impl QuicClient {
    /// Connects (ALPN `mqtt`, trusting `ca`), opens the control stream and completes CONNECT.
    pub fn connect(addr: SocketAddr, ca: &Path, id: &str, version: ProtocolVersion) -> Self {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let tls = tls_client_config(ca, b"mqtt");
        let (endpoint, conn, send, recv) = runtime.block_on(async {
            let crypto = quinn::crypto::rustls::QuicClientConfig::try_from(tls).unwrap();
            let mut endpoint = quinn::Endpoint::client("127.0.0.1:0".parse().unwrap()).unwrap();
            endpoint.set_default_client_config(quinn::ClientConfig::new(Arc::new(crypto)));
            let conn = endpoint
                .connect(addr, "localhost")
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
        client.send(&connect(id, version)).expect("send CONNECT");
        match client.next(Duration::from_secs(5)) {
            Next::Packet(Packet::ConnAck(a)) if a.code.0 == 0 => client,
            other => panic!("{id}: expected CONNACK, got {other:?}"),
        }
    }

    pub fn send(&mut self, packet: &Packet) -> Result<(), quinn::WriteError> {
        let bytes = encode(packet, self.version);
        self.runtime.block_on(self.send.write_all(&bytes))
    }

    /// Sends `packet` and returns once it has left in a UDP datagram, so that a gap the test
    /// makes after it is a gap on the wire.
    pub fn send_now(&mut self, packet: &Packet) {
        let sent_before = self.conn.stats().udp_tx.datagrams;
        self.send(packet).expect("write");
        let deadline = Instant::now() + Duration::from_secs(1);
        while self.conn.stats().udp_tx.datagrams == sent_before {
            assert!(Instant::now() < deadline, "the packet did not leave");
            std::hint::spin_loop();
        }
    }

    pub fn next(&mut self, patience: Duration) -> Next {
        loop {
            match codec::decode(&mut self.buf, Some(self.version), u32::MAX) {
                Ok(Some(p)) => return Next::Packet(p),
                Ok(None) => {}
                Err(e) => return Next::Failed(format!("undecodable bytes: {e}")),
            }
            let mut chunk = [0u8; 4096];
            let read = self.runtime.block_on(async {
                tokio::time::timeout(patience, self.recv.read(&mut chunk)).await
            });
            match read {
                Err(_) => return Next::Timeout,
                Ok(Ok(Some(n))) => self.buf.extend_from_slice(&chunk[..n]),
                Ok(Ok(None)) => return Next::Eof,
                Ok(Err(e)) => return Next::Failed(e.to_string()),
            }
        }
    }

    /// How the QUIC connection ended (waits at most `patience`).
    pub fn closed(&self, patience: Duration) -> Option<quinn::ConnectionError> {
        self.runtime
            .block_on(async { tokio::time::timeout(patience, self.conn.closed()).await })
            .ok()
    }
}
