//! The byte-stream side of the glue: the CONNECT/CONNACK handshake, and per stream a reader
//! task that decodes packets and a writer task that writes encoded batches.
//!
//! Streams are boxed `AsyncRead`/`AsyncWrite` halves, so a TCP socket, a TLS session and a
//! QUIC stream are handled alike. Reader tasks report to the driver over one bounded channel
//! (a slow driver slows the readers, and through them the server); writer tasks take already
//! encoded bytes and count what they still have to write, which is the driver's backpressure
//! signal.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinHandle;

use super::error::ClientError;
use super::state::{ClientState, StreamKey};
use crate::codec::{self, Packet, ProtocolVersion};
use crate::framing::{BatchWriter, PacketReader};

pub(crate) type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
pub(crate) type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// The transport halves of a new connection.
pub(crate) struct LinkParts {
    pub reader: BoxRead,
    pub writer: BoxWrite,
    /// The QUIC connection under the first stream, for opening more.
    pub quic: Option<(quinn::Endpoint, quinn::Connection)>,
    /// QUIC: the first stream was opened in 0-RTT (see `QuicConnection::early`).
    pub early: Option<quinn::ZeroRttAccepted>,
    /// Dialled over the fallback transport because QUIC got no answer (`Fallback`).
    pub fallback: bool,
}

/// Initial read buffer; it grows for large packets.
const READ_CHUNK: usize = 8 * 1024;

/// What stream tasks tell the driver. `epoch` names the connection, so reports from an
/// earlier connection are recognised and ignored.
#[derive(Debug)]
pub(crate) enum LinkEvent {
    Packets {
        epoch: u64,
        stream: StreamKey,
        packets: Vec<Packet>,
    },
    /// The stream ended: the peer closed it (`None`) or it failed.
    Ended {
        epoch: u64,
        stream: StreamKey,
        error: Option<ClientError>,
    },
    /// QUIC: the server opened a stream with a valid server data flow header; its packets
    /// follow as `Packets` with this key.
    ServerStream { epoch: u64, stream: StreamKey },
    /// QUIC: one packet received in a DATAGRAM frame.
    Datagram { epoch: u64, packet: Box<Packet> },
}

/// Bytes handed to the writers of one connection and not yet written, with a wake-up for
/// whoever waits for them to drain.
#[derive(Debug, Default)]
pub(crate) struct Unwritten {
    bytes: AtomicUsize,
    drained: Notify,
}

impl Unwritten {
    pub fn get(&self) -> usize {
        self.bytes.load(Ordering::Relaxed)
    }

    pub async fn drained(&self) {
        self.drained.notified().await
    }

    fn add(&self, n: usize) {
        self.bytes.fetch_add(n, Ordering::Relaxed);
    }

    fn sub(&self, n: usize) {
        self.bytes.fetch_sub(n, Ordering::Relaxed);
        self.drained.notify_one();
    }
}

enum WriteCmd {
    Data(Bytes),
    /// Write what is queued, then shut the stream down (TCP FIN, QUIC FIN).
    Finish,
}

/// The two tasks serving one stream.
pub(crate) struct StreamIo {
    tx: mpsc::UnboundedSender<WriteCmd>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
    unwritten: Arc<Unwritten>,
}

/// How one stream is read.
pub(crate) struct ReadSetup {
    pub epoch: u64,
    pub stream: StreamKey,
    pub version: ProtocolVersion,
    pub max_packet_size: u32,
    /// Bytes already read past the last whole packet (after the handshake).
    pub buffered: BytesMut,
}

impl StreamIo {
    pub fn spawn(
        setup: ReadSetup,
        reader: BoxRead,
        writer: BoxWrite,
        events: mpsc::Sender<LinkEvent>,
        unwritten: Arc<Unwritten>,
    ) -> StreamIo {
        let (tx, rx) = mpsc::unbounded_channel();
        let (epoch, stream) = (setup.epoch, setup.stream);
        let reader = tokio::spawn(read_loop(setup, reader, events.clone()));
        let writer = tokio::spawn(write_loop(
            epoch,
            stream,
            writer,
            rx,
            events,
            unwritten.clone(),
        ));
        StreamIo {
            tx,
            reader,
            writer,
            unwritten,
        }
    }

    /// Queues encoded packets; false if the writer is gone.
    pub fn write(&self, bytes: Bytes) -> bool {
        let n = bytes.len();
        self.unwritten.add(n);
        if self.tx.send(WriteCmd::Data(bytes)).is_err() {
            self.unwritten.sub(n);
            return false;
        }
        true
    }

    /// Ends the stream in order: what is queued is written, then the write side is shut down.
    /// Returns the writer and reader tasks: the caller waits for them or aborts the reader.
    pub fn finish(self) -> (JoinHandle<()>, JoinHandle<()>) {
        let _ = self.tx.send(WriteCmd::Finish);
        (self.writer, self.reader)
    }

    /// Ends the stream now, dropping anything unwritten.
    pub fn abort(self) {
        self.reader.abort();
        self.writer.abort();
    }
}

pub(crate) async fn read_loop(
    setup: ReadSetup,
    mut reader: BoxRead,
    events: mpsc::Sender<LinkEvent>,
) {
    let ReadSetup {
        epoch,
        stream,
        version,
        max_packet_size,
        buffered,
    } = setup;
    let mut input = PacketReader::with_buffered(buffered);
    loop {
        let (packets, error) =
            input.decode_all(|buf| codec::decode(buf, Some(version), max_packet_size));
        if !packets.is_empty()
            && events
                .send(LinkEvent::Packets {
                    epoch,
                    stream,
                    packets,
                })
                .await
                .is_err()
        {
            return;
        }
        if let Some(e) = error {
            return ended(&events, epoch, stream, Some(ClientError::Decode(e))).await;
        }
        input.settle();
        let error = match input.read(&mut reader).await {
            Ok(0) => None,
            Ok(_) => continue,
            Err(e) => Some(ClientError::Io(e)),
        };
        return ended(&events, epoch, stream, error).await;
    }
}

/// Tells the driver that a stream ended: the peer closed it (`None`) or it failed.
async fn ended(
    events: &mpsc::Sender<LinkEvent>,
    epoch: u64,
    stream: StreamKey,
    error: Option<ClientError>,
) {
    let _ = events
        .send(LinkEvent::Ended {
            epoch,
            stream,
            error,
        })
        .await;
}

/// Most bytes one write gathers from queued batches (each batch is already one write's worth
/// of packets; gathering the ones that queued meanwhile saves system calls under load).
const WRITE_GATHER: usize = 64 * 1024;

async fn write_loop(
    epoch: u64,
    stream: StreamKey,
    mut writer: BoxWrite,
    mut rx: mpsc::UnboundedReceiver<WriteCmd>,
    events: mpsc::Sender<LinkEvent>,
    unwritten: Arc<Unwritten>,
) {
    let mut out = BatchWriter::default();
    while let Some(cmd) = rx.recv().await {
        let mut finish = false;
        let buf = out.gather();
        match cmd {
            WriteCmd::Data(bytes) => buf.extend_from_slice(&bytes),
            WriteCmd::Finish => finish = true,
        }
        // Whatever else is queued already goes in the same write.
        while !finish && buf.len() < WRITE_GATHER {
            match rx.try_recv() {
                Ok(WriteCmd::Data(more)) => buf.extend_from_slice(&more),
                Ok(WriteCmd::Finish) => finish = true,
                Err(_) => break,
            }
        }
        let pending = buf.len();
        let result = out.write_gathered(&mut writer).await;
        unwritten.sub(pending);
        if let Err(e) = result {
            return ended(&events, epoch, stream, Some(ClientError::Io(e))).await;
        }
        if finish {
            let _ = writer.shutdown().await;
            return;
        }
    }
}

/// Sends what the state machine has queued (the CONNECT, or a DISCONNECT after a refusal)
/// straight to `writer`, outside the writer task.
async fn write_queued(state: &mut ClientState, writer: &mut BoxWrite) -> Result<(), ClientError> {
    let mut buf = BytesMut::new();
    while let Some((_, packet)) = state.poll_transmit() {
        codec::encode(&packet, state.version(), &mut buf);
    }
    if !buf.is_empty() {
        writer.write_all(&buf).await?;
        writer.flush().await?;
    }
    Ok(())
}

/// Encodes what the state machine has queued (CONNECT, and what was pipelined after it),
/// for [`exchange`] to send.
pub(crate) fn encode_queued(state: &mut ClientState) -> Bytes {
    let mut buf = BytesMut::new();
    while let Some((_, packet)) = state.poll_transmit() {
        codec::encode(&packet, state.version(), &mut buf);
    }
    buf.freeze()
}

/// Writes `first` (the CONNECT flight from [`encode_queued`]) and reads until the CONNACK is
/// processed, within `timeout`. Packets that follow the CONNACK in the same read (a resumed
/// session's messages, a pipelined SUBACK) go to the state machine too; the bytes of an
/// incomplete packet are returned for the reader task.
///
/// Over a QUIC stream opened in 0-RTT, `first` is early data; if the server refuses it, the
/// caller runs this again with the same bytes on a new stream.
pub(crate) async fn exchange(
    state: &mut ClientState,
    reader: &mut BoxRead,
    writer: &mut BoxWrite,
    first: &[u8],
    max_packet_size: u32,
    timeout: Duration,
) -> Result<BytesMut, ClientError> {
    let exchange = async {
        writer.write_all(first).await?;
        writer.flush().await?;
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        loop {
            match reader.read_buf(&mut buf).await {
                Ok(0) => {
                    return Err(ClientError::ConnectionLost(
                        "the server closed the connection before CONNACK".into(),
                    ))
                }
                Ok(_) => {}
                Err(e) => return Err(ClientError::Io(e)),
            }
            loop {
                let packet = match codec::decode(&mut buf, Some(state.version()), max_packet_size) {
                    Ok(Some(packet)) => packet,
                    Ok(None) => break,
                    Err(e) => {
                        let error = state.decode_error(e, Instant::now());
                        let _ = write_queued(state, writer).await;
                        return Err(error);
                    }
                };
                if let Err(error) = state.handle_packet(StreamKey::CONTROL, packet, Instant::now())
                {
                    let _ = write_queued(state, writer).await;
                    return Err(error);
                }
            }
            if state.is_connected() {
                return Ok(buf);
            }
            // Answers to enhanced authentication challenges (AUTH) go out before CONNACK.
            write_queued(state, writer).await?;
        }
    };
    match tokio::time::timeout(timeout, exchange).await {
        Ok(result) => result,
        Err(_) => Err(ClientError::Timeout {
            what: "CONNACK",
            after: timeout,
        }),
    }
}
