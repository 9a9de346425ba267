//! One MQTT connection over an ordered byte stream: a read loop that decodes packets and a
//! write loop that writes whole batches. TCP serves a connection with one of each; QUIC runs
//! the same loops on each of its streams.
//!
//! Reading: everything a read returns is decoded at once and sent to the broker as one event.
//! Writing: the writer takes everything queued for the stream (packets the broker task already
//! encoded) and writes it with one call (no flush per packet). How bytes become packets and
//! batches become writes is `crate::framing`, shared with the bundled client.

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::mpsc;
use tokio_util::task::task_tracker::TaskTrackerToken;

use super::login::LoginContext;
use crate::broker::{ConnId, StreamId, Transmit};
use crate::codec::{self, DecodeError, Packet, ProtocolVersion};
use crate::framing::{BatchWriter, PacketReader};
use crate::handoff::Event;
use crate::handoff::{Outbox, ReadPause};

/// Serves one connection over a single byte stream (TCP) until either side ends it. `flushing`
/// is held until the last packet is written and the write side shut down: server shutdown
/// waits for it.
#[allow(clippy::too_many_arguments)]
pub async fn serve<R, W>(
    conn: ConnId,
    peer: String,
    mut reader: R,
    mut writer: W,
    events: mpsc::Sender<Event>,
    max_packet_size: u32,
    login: LoginContext,
    flushing: TaskTrackerToken,
) where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let Some(outbox) = crate::handoff::open_connection(&events, conn, peer).await else {
        return;
    };
    let read = async {
        let mut version = None;
        let end = read_packets(
            conn,
            StreamId::CONTROL,
            &mut reader,
            &events,
            max_packet_size,
            &mut version,
            |_| {},
            Some(&login),
            &outbox.read_pause,
        )
        .await;
        if let ReadEnd::Failed(error) = end {
            let _ = events.send(Event::DecodeError { conn, error }).await;
            // The broker answers and closes; stop reading and let the writer finish.
            std::future::pending::<()>().await;
        }
    };
    let write = write_packets(conn, &mut writer, &outbox, &events, |_| {});
    let server_closed = tokio::select! {
        _ = read => false,
        _ = write => true,
    };
    // FIN (and TLS close_notify) after the last packet.
    let _ = writer.shutdown().await;
    drop(flushing);
    if server_closed {
        linger(&mut reader).await;
    }
    let _ = events.send(Event::Lost { conn }).await;
}

/// The longest a closed connection keeps reading (and discarding) what its client still sends.
const LINGER: std::time::Duration = std::time::Duration::from_secs(2);

/// Lingering close, as HTTP servers do: after the broker ended a connection (a DISCONNECT with
/// a reason, a refused CONNECT) and its write side is shut down, read and discard what the
/// client still sends until it closes too, for at most [`LINGER`]. Closing a TCP socket with
/// unread data resets the connection, and a reset may destroy our last packet in the client's
/// receive buffer before the client has read it: a client that exceeded Receive Maximum while
/// still publishing would see `EPIPE` / `ECONNRESET` instead of DISCONNECT 0x93.
async fn linger<R: AsyncRead + Unpin>(reader: &mut R) {
    let mut sink = [0u8; 1024];
    let discard = async {
        loop {
            match reader.read(&mut sink).await {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, discard).await;
}

/// Where a read loop sends what it decoded: the broker task's channel itself, or a QUIC
/// stream's way to it through its 0-RTT gate (`early::StreamEvents`). An error: the broker
/// task is gone.
pub(crate) trait EventSink {
    async fn send(&mut self, event: Event) -> Result<(), ()>;
}

impl EventSink for &mpsc::Sender<Event> {
    async fn send(&mut self, event: Event) -> Result<(), ()> {
        mpsc::Sender::send(self, event).await.map_err(|_| ())
    }
}

/// How a read loop ended.
pub enum ReadEnd {
    /// End of stream, reset or I/O error.
    Closed,
    /// Bytes that do not decode; nothing after them was read.
    Failed(DecodeError),
    /// The broker is gone.
    BrokerGone,
}

/// Reads and decodes packets from one stream, sending them to the broker tagged with `stream`.
/// `version` is the connection's protocol version (`None` until CONNECT, which sets it and
/// is shown to `on_connect`). On the stream that carries CONNECT, `login` judges its credentials
/// and the verdict goes to the broker just ahead of the packets (`super::login`).
#[allow(clippy::too_many_arguments)]
pub(crate) async fn read_packets<R: AsyncRead + Unpin>(
    conn: ConnId,
    stream: StreamId,
    reader: &mut R,
    mut events: impl EventSink,
    max_packet_size: u32,
    version: &mut Option<ProtocolVersion>,
    mut on_connect: impl FnMut(&codec::Connect),
    login: Option<&LoginContext>,
    pause: &ReadPause,
) -> ReadEnd {
    let mut input = PacketReader::default();
    loop {
        // Backpressure: not read while the broker holds this publisher back, nor while it has
        // much of what was read before to handle.
        pause.wait().await;
        let read = match input.read(reader).await {
            Ok(0) | Err(_) => return ReadEnd::Closed,
            Ok(n) => n,
        };
        let mut connect_at = None;
        let mut decoded = 0;
        let (packets, error) = input.decode_all(|buf| {
            let packet = codec::decode_from_client(buf, *version, max_packet_size);
            if let Ok(Some(Packet::Connect(c))) = &packet {
                *version = Some(c.protocol);
                on_connect(c);
                connect_at.get_or_insert(decoded);
            }
            decoded += 1;
            packet
        });
        if let (Some(login), Some(Packet::Connect(connect))) =
            (login, connect_at.and_then(|i| packets.get(i)))
        {
            // Boxed: the verdict (a blocking-pool password check) is awaited once per
            // connection; inline, its state would enlarge every idle connection's task.
            let login = Box::pin(login.verdict(connect)).await;
            if events.send(Event::Login { conn, login }).await.is_err() {
                return ReadEnd::BrokerGone;
            }
        }
        if !packets.is_empty() {
            pause.handed(read);
            let packets = Event::Packets {
                conn,
                stream,
                packets,
                read,
            };
            if events.send(packets).await.is_err() {
                return ReadEnd::BrokerGone;
            }
        }
        if let Some(error) = error {
            return ReadEnd::Failed(error);
        }
        input.settle();
    }
}

/// How one batch of encoded transmits goes out. A byte stream (TCP, TLS, WebSocket bytes)
/// gathers them into one write; a QUIC stream takes each transmit's buffer as a chunk, with no
/// copy (`quic_dispatch::QuicSink`): quinn's `write(&[u8])` copies what it is given.
pub(crate) trait BatchSink {
    /// Writes the bytes of every transmit (they may be taken); returns how many went out.
    async fn write_batch(&mut self, transmits: &mut [Transmit]) -> std::io::Result<usize>;
}

/// A byte stream with its gathering buffer.
struct ByteSink<'a, W> {
    writer: &'a mut W,
    out: BatchWriter,
}

impl<W: AsyncWrite + Unpin> BatchSink for ByteSink<'_, W> {
    async fn write_batch(&mut self, transmits: &mut [Transmit]) -> std::io::Result<usize> {
        // The broker encoded the packets: one transmit is written as it is, several are
        // gathered for one write.
        match transmits {
            [one] => self.out.write_one(self.writer, &one.bytes).await,
            several => {
                for t in several.iter() {
                    self.out.gather().extend_from_slice(&t.bytes);
                }
                self.out.write_gathered(self.writer).await
            }
        }
    }
}

/// Writes what the broker queues in `outbox` to a byte stream until it asks to close (then
/// returns) or the stream fails; see [`write_batches`].
pub async fn write_packets<W: AsyncWrite + Unpin>(
    conn: ConnId,
    writer: &mut W,
    outbox: &Outbox,
    events: &mpsc::Sender<Event>,
    written: impl FnMut(&[Transmit]),
) {
    let mut sink = ByteSink {
        writer,
        out: BatchWriter::default(),
    };
    write_batches(conn, &mut sink, outbox, events, written).await
}

/// Writes what the broker queues in `outbox` until it asks to close (then returns) or the
/// stream fails. Reports written bytes back for backpressure accounting, and calls `written`
/// with each batch once it is written.
pub(crate) async fn write_batches<S: BatchSink>(
    conn: ConnId,
    sink: &mut S,
    outbox: &Outbox,
    events: &mpsc::Sender<Event>,
    mut written: impl FnMut(&[Transmit]),
) {
    let mut spare = Vec::new();
    loop {
        let mut batch = outbox.next_batch(spare).await;
        let accounted: usize = batch.transmits.iter().map(|t| t.accounted).sum();
        match sink.write_batch(&mut batch.transmits).await {
            Err(_) => return,
            Ok(0) => {}
            Ok(_) => {
                let written = Event::Written {
                    conn,
                    bytes: accounted,
                };
                if events.send(written).await.is_err() {
                    return;
                }
            }
        }
        written(&batch.transmits);
        if batch.close.is_some() {
            return;
        }
        // Same for the transmit list: an idle connection holds no vector.
        spare = if batch.transmits.len() > 1 {
            batch.transmits
        } else {
            Vec::new()
        };
    }
}
