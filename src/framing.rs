//! MQTT packets over an ordered byte stream: reading and decoding in batches, and writing
//! encoded batches. One implementation for both ends: the broker's connections
//! (`transport::stream`, over TCP, TLS, WebSocket and QUIC streams) and the bundled client
//! (`client::link`).
//!
//! Reading: everything a read returns is decoded at once (one read, many packets). An idle
//! stream holds no heap buffer: it waits with a small buffer inside its task and allocates when
//! bytes arrive; a read that fills the small buffer marks the stream busy, and a busy stream
//! reads in large chunks until a read comes back small.
//!
//! Writing: what is queued goes out with one write and one flush (never a flush per packet);
//! a single part is written as it is, several are gathered into one buffer. A busy stream keeps
//! its buffer for the next batch; one that wrote a small batch (a CONNACK, a PINGRESP) is likely
//! idle and gives it back.

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::codec::{DecodeError, Packet};

/// What a busy stream reads at once (the buffer grows on demand for large packets).
const READ_CHUNK: usize = 4096;
/// What an idle stream waits with (inside its task, not on the heap).
const IDLE_READ: usize = 256;
/// A write buffer above this size is released after use instead of kept for the next batch.
const KEEP_WRITE_BUFFER: usize = 64 * 1024;
/// A batch at least this large marks a busy stream, which keeps its write buffer.
const BUSY_BATCH: usize = 1024;

/// The read side of one stream: its buffer and whether it is busy.
#[derive(Debug, Default)]
pub struct PacketReader {
    buf: BytesMut,
    busy: bool,
}

impl PacketReader {
    /// A reader that starts with bytes already read (after a handshake read ahead).
    pub fn with_buffered(buf: BytesMut) -> PacketReader {
        PacketReader { buf, busy: false }
    }

    /// Reads once from `reader`. `Ok(0)` is the end of the stream.
    pub async fn read<R: AsyncRead + Unpin>(&mut self, reader: &mut R) -> std::io::Result<usize> {
        if self.buf.is_empty() && !self.busy {
            let mut small = [0u8; IDLE_READ];
            let n = reader.read(&mut small).await?;
            self.buf
                .extend_from_slice(small.get(..n).unwrap_or_default());
            self.busy = n == IDLE_READ;
            Ok(n)
        } else {
            if self.buf.capacity() - self.buf.len() < READ_CHUNK / 4 {
                self.buf.reserve(READ_CHUNK);
            }
            let n = reader.read_buf(&mut self.buf).await?;
            self.busy = n >= READ_CHUNK / 4;
            Ok(n)
        }
    }

    /// Decodes every whole packet buffered, with `decode` (the codec's client- or server-side
    /// decoder, which may change with what it decoded: CONNECT sets the version). Stops at the
    /// first error: nothing after it is decoded.
    pub fn decode_all(
        &mut self,
        mut decode: impl FnMut(&mut BytesMut) -> Result<Option<Packet>, DecodeError>,
    ) -> (Vec<Packet>, Option<DecodeError>) {
        let mut packets = Vec::new();
        // Sized from the first packet: a client's packets in one read are mostly alike (a
        // subscriber's PUBACKs, a publisher's PUBLISHes), so the vector is allocated once
        // instead of growing step by step (a few hundred PUBACKs in one read).
        let before = self.buf.len();
        match decode(&mut self.buf) {
            Ok(Some(packet)) => {
                let first = before.saturating_sub(self.buf.len()).max(1);
                packets.reserve((1 + self.buf.len() / first).min(MAX_PACKETS_HINT));
                packets.push(packet);
            }
            Ok(None) => return (packets, None),
            Err(e) => return (packets, Some(e)),
        }
        loop {
            match decode(&mut self.buf) {
                Ok(Some(packet)) => packets.push(packet),
                Ok(None) => return (packets, None),
                Err(e) => return (packets, Some(e)),
            }
        }
    }

    /// After a batch: an idle stream with nothing buffered gives its buffer back.
    pub fn settle(&mut self) {
        if self.buf.is_empty() && !self.busy {
            self.buf = BytesMut::new();
        }
    }
}

/// The most packets [`PacketReader::decode_all`] reserves room for at once.
const MAX_PACKETS_HINT: usize = 1024;

/// The write side of one stream: the buffer that gathers a batch.
#[derive(Debug, Default)]
pub struct BatchWriter {
    buf: BytesMut,
}

impl BatchWriter {
    /// The buffer a batch of several parts is gathered in, for [`BatchWriter::write_gathered`].
    pub fn gather(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Writes what was gathered with one write and one flush; returns the bytes written.
    pub async fn write_gathered<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<usize> {
        let buf = std::mem::take(&mut self.buf);
        let result = write_flush(writer, &buf).await;
        self.keep(buf);
        result
    }

    /// Writes one part as it is (no copy into the buffer), with one write and one flush.
    pub async fn write_one<W: AsyncWrite + Unpin>(
        &mut self,
        writer: &mut W,
        part: &[u8],
    ) -> std::io::Result<usize> {
        write_flush(writer, part).await
    }

    /// A busy stream keeps its (cleared) buffer for the next batch; after a small batch, or a
    /// very large one, the buffer goes.
    fn keep(&mut self, mut buf: BytesMut) {
        if buf.len() >= BUSY_BATCH && buf.capacity() <= KEEP_WRITE_BUFFER {
            buf.clear();
            self.buf = buf;
        }
    }
}

async fn write_flush<W: AsyncWrite + Unpin>(
    writer: &mut W,
    bytes: &[u8],
) -> std::io::Result<usize> {
    if bytes.is_empty() {
        return Ok(0);
    }
    writer.write_all(bytes).await?;
    writer.flush().await?;
    Ok(bytes.len())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, ProtocolVersion};

    fn pingreqs(n: usize) -> Vec<u8> {
        [0xC0u8, 0x00].repeat(n)
    }

    #[tokio::test]
    async fn a_read_decodes_every_whole_packet_and_keeps_the_rest() {
        let mut bytes = pingreqs(3);
        bytes.push(0xC0); // half a PINGREQ
        let mut input = &bytes[..];
        let mut reader = PacketReader::default();
        assert_eq!(reader.read(&mut input).await.unwrap(), 7);
        let v = Some(ProtocolVersion::V5);
        let (packets, error) = reader.decode_all(|buf| codec::decode_from_client(buf, v, u32::MAX));
        assert_eq!((packets.len(), error), (3, None));
        let mut rest: &[u8] = &[0x00];
        reader.read(&mut rest).await.unwrap();
        let (packets, _) = reader.decode_all(|buf| codec::decode_from_client(buf, v, u32::MAX));
        assert_eq!(packets, vec![Packet::PingReq]);
        reader.settle();
        assert_eq!(reader.buf.capacity(), 0, "an idle reader holds no buffer");
    }

    #[tokio::test]
    async fn a_full_small_read_makes_the_reader_busy_until_a_read_comes_back_small() {
        let bytes = pingreqs(1000);
        let mut input = &bytes[..];
        let mut reader = PacketReader::default();
        assert_eq!(reader.read(&mut input).await.unwrap(), IDLE_READ);
        assert!(reader.busy);
        // Busy: the next read takes a large chunk.
        assert!(reader.read(&mut input).await.unwrap() > IDLE_READ);
        let mut tail: &[u8] = &[0xC0, 0x00];
        assert_eq!(reader.read(&mut tail).await.unwrap(), 2);
        assert!(!reader.busy);
    }

    /// The packets of one read are gathered in a vector sized once from the first packet;
    /// an error first returns nothing, an error later keeps what came before it.
    #[tokio::test]
    async fn a_read_of_many_small_packets_fills_a_vector_sized_once() {
        let bytes = pingreqs(300);
        let mut input = &bytes[..];
        let mut reader = PacketReader::default();
        let mut read = 0;
        while read < bytes.len() {
            read += reader.read(&mut input).await.unwrap();
        }
        let v = Some(ProtocolVersion::V5);
        let (packets, error) = reader.decode_all(|buf| codec::decode_from_client(buf, v, u32::MAX));
        assert_eq!((packets.len(), error), (300, None));
        assert_eq!(packets.capacity(), 300, "no growth after the first packet");
        let mut bad: &[u8] = &[0x00, 0x00];
        reader.read(&mut bad).await.unwrap();
        let (packets, error) = reader.decode_all(|buf| codec::decode_from_client(buf, v, u32::MAX));
        assert!(packets.is_empty() && error.is_some());
    }

    #[tokio::test]
    async fn decoding_stops_at_the_first_error() {
        let mut bytes = pingreqs(2);
        bytes.extend_from_slice(&[0x00, 0x00]); // packet type 0 is reserved
        bytes.extend_from_slice(&pingreqs(1));
        let mut input = &bytes[..];
        let mut reader = PacketReader::default();
        reader.read(&mut input).await.unwrap();
        let v = Some(ProtocolVersion::V5);
        let (packets, error) = reader.decode_all(|buf| codec::decode_from_client(buf, v, u32::MAX));
        assert_eq!(packets.len(), 2);
        assert!(error.is_some());
    }

    #[tokio::test]
    async fn gathered_parts_go_out_in_one_write_and_a_busy_writer_keeps_its_buffer() {
        let mut writer = BatchWriter::default();
        let mut out = Vec::new();
        writer.gather().extend_from_slice(b"ab");
        writer.gather().extend_from_slice(b"cd");
        assert_eq!(writer.write_gathered(&mut out).await.unwrap(), 4);
        assert_eq!(&out[..], b"abcd");
        assert_eq!(
            writer.buf.capacity(),
            0,
            "a small batch gives its buffer back"
        );
        assert_eq!(writer.write_gathered(&mut out).await.unwrap(), 0);
        writer.gather().extend_from_slice(&[7u8; BUSY_BATCH]);
        writer.write_gathered(&mut out).await.unwrap();
        assert!(writer.buf.capacity() >= BUSY_BATCH && writer.buf.is_empty());
        assert_eq!(writer.write_one(&mut out, b"z").await.unwrap(), 1);
        assert_eq!(out.len(), 4 + BUSY_BATCH + 1);
    }
}
