//! qlog on demand (`quic.qlog_dir`): quinn's qlog trace of selected QUIC connections, one
//! JSON-SEQ file per connection (`.sqlog`, which qvis opens).
//!
//! quinn takes a qlog stream in the transport configuration, so the choice is made when a
//! connection is accepted: a traced connection is accepted with its own copy of the server
//! configuration whose transport carries a stream to its file; every other connection uses the
//! endpoint's configuration and quinn records nothing for it (no cost).
//!
//! The address is known at accept, the client id only once the CONNECT arrives, one round trip
//! or more later. With a client id filter, every connection whose address does not already
//! select it is traced into memory (at most [`PENDING_LIMIT`] bytes) until its CONNECT: a
//! listed client id writes the buffer to a file and keeps writing there; any other client id,
//! or a connection that ends without CONNECT, drops it. So the file of a listed client starts
//! with its handshake, and the tracing cost before CONNECT is paid by every connection while a
//! client id filter is set.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::broker::ConnId;
use crate::config::Config;
use crate::ipnet::{any_contains, IpNetwork};

/// The most a connection's trace holds in memory while its client id is not yet known; past
/// it the trace is dropped (a CONNECT that slow is not worth tracing from the start).
pub const PENDING_LIMIT: usize = 1 << 20;

#[derive(Debug, thiserror::Error)]
#[error("quic.qlog_dir: cannot create {dir}: {source}")]
pub struct QlogDirError {
    dir: PathBuf,
    source: io::Error,
}

/// `quic.qlog_*`, with the endpoint's server configuration to copy for traced connections.
#[derive(Clone)]
pub struct QlogSettings {
    dir: Arc<Path>,
    client_ids: Arc<[String]>,
    addresses: Arc<[IpNetwork]>,
    quic: crate::config::Quic,
    server: quinn::ServerConfig,
}

impl std::fmt::Debug for QlogSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QlogSettings")
            .field("dir", &self.dir)
            .field("client_ids", &self.client_ids)
            .field("addresses", &self.addresses)
            .finish_non_exhaustive()
    }
}

/// What the accept loop decided for one connection.
pub enum Decision {
    /// Not traced: the endpoint's configuration.
    Off,
    /// Traced from the start (selected by address, or every connection).
    File(Arc<quinn::ServerConfig>),
    /// Traced into memory until its CONNECT names the client (`Pending::decide`).
    Pending(Arc<quinn::ServerConfig>, Pending),
}

impl QlogSettings {
    /// `None` when `quic.qlog_dir` is null; creates the directory.
    pub fn from_config(
        config: &Config,
        server: &quinn::ServerConfig,
    ) -> Result<Option<QlogSettings>, QlogDirError> {
        let Some(dir) = config.quic.qlog_dir.clone() else {
            return Ok(None);
        };
        std::fs::create_dir_all(&dir).map_err(|source| QlogDirError {
            dir: dir.clone(),
            source,
        })?;
        tracing::info!(dir = %dir.display(), "qlog: tracing QUIC connections");
        Ok(Some(QlogSettings {
            dir: dir.into(),
            client_ids: config.quic.qlog_client_ids.clone().into(),
            addresses: config.quic.qlog_addresses.clone().into(),
            quic: config.quic.clone(),
            server: server.clone(),
        }))
    }

    /// Whether and how connection `conn` from `remote` is traced.
    pub fn decide(&self, conn: ConnId, remote: SocketAddr) -> Decision {
        let every = self.client_ids.is_empty() && self.addresses.is_empty();
        if every || any_contains(&self.addresses, remote.ip()) {
            let label = format!("{}_{}", remote.ip(), remote.port());
            return match File::create(trace_path(&self.dir, conn, &label)) {
                Ok(file) => {
                    let sink = Sink::new(State::Writing(BufWriter::new(file)));
                    Decision::File(self.traced(conn, remote, sink.clone()))
                }
                Err(e) => {
                    tracing::warn!(dir = %self.dir.display(), error = %e, "qlog: cannot create a trace file");
                    Decision::Off
                }
            };
        }
        if self.client_ids.is_empty() {
            return Decision::Off;
        }
        let sink = Sink::new(State::Pending(Vec::new()));
        let pending = Pending {
            sink: sink.clone(),
            dir: self.dir.clone(),
            client_ids: self.client_ids.clone(),
            conn,
        };
        Decision::Pending(self.traced(conn, remote, sink), pending)
    }

    /// A copy of the server configuration whose transport writes a qlog stream to `sink`.
    fn traced(&self, conn: ConnId, remote: SocketAddr, sink: Sink) -> Arc<quinn::ServerConfig> {
        let mut qlog = quinn::QlogConfig::default();
        qlog.writer(Box::new(Gather::new(sink)))
            .title(Some(format!("mqttd connection {}", conn.0)))
            .description(Some(format!("client {remote}")));
        let path = super::quic_transport::PathKind::of(remote.ip());
        let mut transport = super::quic_transport::transport_config(&self.quic, path);
        transport.qlog_stream(qlog.into_stream());
        let mut server = self.server.clone();
        server.transport_config(Arc::new(transport));
        Arc::new(server)
    }
}

/// `<dir>/<unix ms>-<connection number>-<label>.sqlog`.
fn trace_path(dir: &Path, conn: ConnId, label: &str) -> PathBuf {
    let ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis());
    let label: String = label
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || "-_.".contains(c) {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    dir.join(format!("{ms}-{}-{label}.sqlog", conn.0))
}

/// A connection traced into memory until its CONNECT. Dropped undecided (no CONNECT), the
/// trace is discarded.
pub struct Pending {
    sink: Sink,
    dir: Arc<Path>,
    client_ids: Arc<[String]>,
    conn: ConnId,
}

impl Pending {
    /// The CONNECT's client id: a listed one moves the trace to a file, any other drops it.
    pub fn decide(&self, client_id: &str) {
        let mut state = self.sink.lock();
        let State::Pending(buffer) = &mut *state else {
            return;
        };
        if !self.client_ids.iter().any(|id| id == client_id) {
            *state = State::Dropped;
            return;
        }
        let path = trace_path(&self.dir, self.conn, client_id);
        let opened = File::create(&path).and_then(|file| {
            let mut file = BufWriter::new(file);
            file.write_all(buffer)?;
            Ok(file)
        });
        *state = match opened {
            Ok(file) => State::Writing(file),
            Err(e) => {
                tracing::warn!(path = %path.display(), error = %e, "qlog: cannot write a trace file");
                State::Dropped
            }
        };
    }
}

impl Drop for Pending {
    fn drop(&mut self) {
        let mut state = self.sink.lock();
        if matches!(*state, State::Pending(_)) {
            *state = State::Dropped;
        }
    }
}

enum State {
    Pending(Vec<u8>),
    Writing(BufWriter<File>),
    Dropped,
}

/// The writer quinn's qlog streamer writes to (under its own lock, once per event).
#[derive(Clone)]
struct Sink(Arc<Mutex<State>>);

impl Sink {
    fn new(state: State) -> Sink {
        Sink(Arc::new(Mutex::new(state)))
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // Every write leaves the state whole: a poisoned lock is consistent.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Write for Sink {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        let mut state = self.lock();
        match &mut *state {
            State::Pending(buffer) if buffer.len() + bytes.len() > PENDING_LIMIT => {
                *state = State::Dropped;
            }
            State::Pending(buffer) => buffer.extend_from_slice(bytes),
            State::Writing(file) => file.write_all(bytes)?,
            State::Dropped => {}
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut *self.lock() {
            State::Writing(file) => file.flush(),
            _ => Ok(()),
        }
    }
}

/// What quinn's qlog streamer writes to: `serde_json` writes each event in many small
/// pieces (a field name, a number, a quote), and taking the shared state's lock for each was a
/// fifth of qlog's cost. They gather here and reach the [`Sink`] once per record (the
/// streamer ends each JSON-SEQ record with a write of its own of `\n`; JSON text has no raw
/// newline), so the sink sees whole records in the same order and at the same moments as
/// before; at most [`GATHER`] bytes wait, and `flush` and drop pass on the rest.
struct Gather {
    sink: Sink,
    buf: Vec<u8>,
}

/// Bytes gathered at most before they go to the sink, record end or not.
const GATHER: usize = 64 * 1024;

impl Gather {
    fn new(sink: Sink) -> Gather {
        Gather {
            sink,
            buf: Vec::new(),
        }
    }

    fn pass_on(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = self.sink.write_all(&self.buf);
        self.buf.clear();
        result
    }
}

impl Write for Gather {
    fn write(&mut self, bytes: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(bytes);
        if bytes.ends_with(b"\n") || self.buf.len() >= GATHER {
            self.pass_on()?;
        }
        Ok(bytes.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.pass_on()?;
        self.sink.flush()
    }
}

impl Drop for Gather {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(dir: &std::path::Path, client_ids: &[&str], addresses: &[&str]) -> QlogSettings {
        let mut config = Config::default();
        config.quic.qlog_dir = Some(dir.to_path_buf());
        config.quic.qlog_client_ids = client_ids.iter().map(|s| s.to_string()).collect();
        config.quic.qlog_addresses = addresses.iter().map(|s| s.parse().unwrap()).collect();
        let certs = tempfile::tempdir().unwrap();
        let identity = crate::transport::cert::load_or_generate(certs.path()).unwrap();
        let server = crate::transport::quic::server_config(&config, identity, None).unwrap();
        QlogSettings::from_config(&config, &server)
            .unwrap()
            .unwrap()
    }

    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    fn write(decision: &Decision, sink_bytes: &[u8]) -> Option<Sink> {
        // The sink quinn would write to is inside the server configuration; tests reach it
        // through the pending handle.
        match decision {
            Decision::Pending(_, pending) => {
                let mut sink = pending.sink.clone();
                sink.write_all(sink_bytes).unwrap();
                Some(sink)
            }
            _ => None,
        }
    }

    #[test]
    fn address_filter_traces_from_accept_and_others_not_at_all() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), &[], &["10.0.0.0/8"]);
        assert!(matches!(
            s.decide(ConnId(1), "10.1.2.3:4000".parse().unwrap()),
            Decision::File(_)
        ));
        assert!(matches!(
            s.decide(ConnId(2), "192.0.2.1:4000".parse().unwrap()),
            Decision::Off
        ));
        let names = files(dir.path());
        assert_eq!(names.len(), 1);
        assert!(names[0].ends_with("-1-10.1.2.3_4000.sqlog"), "{names:?}");
    }

    #[test]
    fn client_id_filter_keeps_a_listed_client_and_drops_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), &["sensor/7"], &[]);
        let listed = s.decide(ConnId(1), "192.0.2.1:4000".parse().unwrap());
        let other = s.decide(ConnId(2), "192.0.2.2:4000".parse().unwrap());
        let silent = s.decide(ConnId(3), "192.0.2.3:4000".parse().unwrap());
        let mut sink = write(&listed, b"\x1e{\"handshake\":1}\n").unwrap();
        write(&other, b"\x1e{}\n").unwrap();
        write(&silent, b"\x1e{}\n").unwrap();
        assert!(
            files(dir.path()).is_empty(),
            "nothing on disk before CONNECT"
        );
        let (Decision::Pending(_, p1), Decision::Pending(_, p2)) = (&listed, &other) else {
            panic!("client id filter: connections are pending");
        };
        p1.decide("sensor/7");
        p2.decide("someone-else");
        drop(silent);
        sink.write_all(b"\x1e{\"after\":1}\n").unwrap();
        sink.flush().unwrap();
        let names = files(dir.path());
        assert_eq!(names.len(), 1, "{names:?}");
        assert!(names[0].ends_with("-1-sensor_7.sqlog"), "{names:?}");
        let text = std::fs::read_to_string(dir.path().join(&names[0])).unwrap();
        // quinn's header record (written when the stream starts), then the events.
        assert!(text.starts_with("\x1e{\"qlog_version\""), "{text}");
        assert!(
            text.ends_with("\n\x1e{\"handshake\":1}\n\x1e{\"after\":1}\n"),
            "{text}"
        );
    }

    #[test]
    fn small_writes_reach_the_sink_once_per_record() {
        let sink = Sink::new(State::Pending(Vec::new()));
        let mut gather = Gather::new(sink.clone());
        let pending = |sink: &Sink| match &*sink.lock() {
            State::Pending(buffer) => buffer.clone(),
            _ => panic!("still pending"),
        };
        for piece in [&b"\x1e"[..], b"{", b"\"time\"", b":", b"1", b"}"] {
            gather.write_all(piece).unwrap();
        }
        assert!(pending(&sink).is_empty(), "half a record waits");
        gather.write_all(b"\n").unwrap();
        assert_eq!(pending(&sink), b"\x1e{\"time\":1}\n");
        gather.write_all(b"\x1e{").unwrap();
        drop(gather);
        assert_eq!(
            pending(&sink),
            b"\x1e{\"time\":1}\n\x1e{",
            "drop passes on the rest"
        );
    }

    #[test]
    fn a_pending_trace_past_the_limit_is_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let s = settings(dir.path(), &["c"], &[]);
        let d = s.decide(ConnId(1), "192.0.2.1:4000".parse().unwrap());
        write(&d, &vec![b' '; PENDING_LIMIT + 1]).unwrap();
        let Decision::Pending(_, p) = &d else {
            panic!("pending");
        };
        p.decide("c");
        assert!(files(dir.path()).is_empty());
    }
}
