//! The QUIC extensions' I/O on the client: server-initiated unidirectional streams (topic-to-
//! stream mapping, `proto-ext/flows.md` section 7) and received DATAGRAM frames
//! (`proto-ext/datagrams.md`). Both report to the driver over the link channel; the session
//! state machine decides what the packets mean.
//!
//! A server stream must open with a server data flow header (0x13, a server flow id); one that
//! does not is refused with STOP_SENDING and the flow error code of `flows.md` section 5, and
//! the connection lives on. After the header it is read like any other stream.

use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use tokio::io::AsyncReadExt;
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use super::link::{self, LinkEvent, ReadSetup};
use super::quic_ext::Counters;
use super::state::StreamKey;
use crate::codec::flow::{self, FlowError, FlowHeader, FLOW_SERVER_DATA};
use crate::codec::{self, Packet, ProtocolVersion};

/// Stream error codes of the MQTT-next draft (flows.md section 5).
const STREAM_TYPE: u32 = 0xB5;
const BAD_FLOW_ID: u32 = 0xB6;
const FLOW_REFUSED: u32 = 0xBE;

/// How the streams and datagrams of one connection are read.
#[derive(Clone)]
pub(crate) struct ExtSetup {
    pub epoch: u64,
    pub version: ProtocolVersion,
    pub max_packet_size: u32,
    pub events: mpsc::Sender<LinkEvent>,
    pub counters: Arc<Counters>,
}

/// Why a server stream's opening bytes are refused: the STOP_SENDING code.
fn refusal(header: Result<&FlowHeader, FlowError>) -> Option<u32> {
    match header {
        Ok(FlowHeader::Data { kind, id, .. }) if *kind == FLOW_SERVER_DATA => {
            (!id.is_server_initiated()).then_some(BAD_FLOW_ID)
        }
        Ok(FlowHeader::UserDefined) => Some(FLOW_REFUSED),
        Ok(_) => Some(STREAM_TYPE),
        Err(_) => Some(BAD_FLOW_ID),
    }
}

/// Reads the flow header at the start of a server stream; returns the bytes after it, or the
/// STOP_SENDING code refusing the stream. `Ok(None)`: the stream ended first.
async fn read_header(recv: &mut quinn::RecvStream) -> Result<Option<BytesMut>, u32> {
    let mut buf = BytesMut::with_capacity(64);
    loop {
        if let Some(&first) = buf.first() {
            if !flow::starts_flow(first) {
                // PUBLISH without a header: not a flow (flows.md section 7 requires one).
                return Err(STREAM_TYPE);
            }
            match flow::parse(&buf) {
                Ok(Some((header, len))) => {
                    return match refusal(Ok(&header)) {
                        Some(code) => Err(code),
                        None => {
                            let _ = buf.split_to(len);
                            Ok(Some(buf))
                        }
                    };
                }
                Ok(None) => {}
                Err(e) => return Err(refusal(Err(e)).unwrap_or(BAD_FLOW_ID)),
            }
        }
        match recv.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return Ok(None),
            Ok(_) => {}
        }
    }
}

/// Accepts the server's unidirectional streams until the connection ends.
pub(crate) async fn accept_streams(connection: quinn::Connection, setup: ExtSetup) {
    let mut readers = JoinSet::new();
    loop {
        tokio::select! {
            accepted = connection.accept_uni() => {
                let Ok(recv) = accepted else { break };
                readers.spawn(serve_stream(recv, setup.clone()));
            }
            Some(_) = readers.join_next(), if !readers.is_empty() => {}
        }
    }
    // The connection is gone: let the readers report what they had.
    while readers.join_next().await.is_some() {}
}

async fn serve_stream(mut recv: quinn::RecvStream, setup: ExtSetup) {
    let stream = StreamKey::server(recv.id().index());
    let buffered = match read_header(&mut recv).await {
        Ok(Some(rest)) => rest,
        Ok(None) => return,
        Err(code) => {
            tracing::debug!(code, "server stream refused: bad flow header");
            Counters::add(&setup.counters.server_streams_refused, 1);
            let _ = recv.stop(code.into());
            return;
        }
    };
    Counters::add(&setup.counters.server_streams, 1);
    let opened = LinkEvent::ServerStream {
        epoch: setup.epoch,
        stream,
    };
    if setup.events.send(opened).await.is_err() {
        return;
    }
    let read = ReadSetup {
        epoch: setup.epoch,
        stream,
        version: setup.version,
        max_packet_size: setup.max_packet_size,
        buffered,
    };
    link::read_loop(read, Box::new(recv), setup.events).await;
}

/// What one received datagram holds: exactly one packet, or nothing usable.
pub(crate) fn decode_datagram(
    datagram: Bytes,
    version: ProtocolVersion,
    max_packet_size: u32,
) -> Option<Packet> {
    // First byte 0x00 is not MQTT (datagrams.md section 2); empty ones are probes.
    if datagram.first().is_none_or(|&b| b == 0x00) {
        return None;
    }
    let mut buf = BytesMut::from(&datagram[..]);
    match codec::decode(&mut buf, Some(version), max_packet_size) {
        Ok(Some(packet)) if buf.is_empty() => Some(packet),
        _ => None,
    }
}

/// Reads the server's datagrams until the connection ends.
pub(crate) async fn read_datagrams(connection: quinn::Connection, setup: ExtSetup) {
    while let Ok(datagram) = connection.read_datagram().await {
        match decode_datagram(datagram, setup.version, setup.max_packet_size) {
            Some(packet) => {
                let event = LinkEvent::Datagram {
                    epoch: setup.epoch,
                    packet: Box::new(packet),
                };
                if setup.events.send(event).await.is_err() {
                    return;
                }
            }
            None => Counters::add(&setup.counters.datagrams_dropped, 1),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::flow::{FlowFlags, FlowId};

    #[test]
    fn only_server_data_flows_with_server_ids_are_accepted() {
        let data = |kind, id| FlowHeader::Data {
            kind,
            id: FlowId(id),
            expire_secs: 0,
            flags: FlowFlags(0),
        };
        assert_eq!(refusal(Ok(&data(0x13, 1))), None);
        assert_eq!(refusal(Ok(&data(0x13, 2))), Some(BAD_FLOW_ID));
        assert_eq!(refusal(Ok(&data(0x12, 3))), Some(STREAM_TYPE));
        assert_eq!(
            refusal(Ok(&FlowHeader::Control {
                id: FlowId(0),
                flags: FlowFlags(0)
            })),
            Some(STREAM_TYPE)
        );
        assert_eq!(refusal(Ok(&FlowHeader::UserDefined)), Some(FLOW_REFUSED));
        assert_eq!(refusal(Err(FlowError::Malformed)), Some(BAD_FLOW_ID));
    }

    #[test]
    fn a_datagram_is_exactly_one_packet() {
        let v5 = ProtocolVersion::V5;
        // datagrams.md section 4: QoS 0 PUBLISH of "hi" to dg/x.
        let publish = [
            0x30, 0x09, 0x00, 0x04, b'd', b'g', b'/', b'x', 0x00, b'h', b'i',
        ];
        assert!(matches!(
            decode_datagram(Bytes::copy_from_slice(&publish), v5, 1024),
            Some(Packet::Publish(p)) if p.topic == "dg/x" && &p.payload[..] == b"hi"
        ));
        let mut two = publish.to_vec();
        two.extend_from_slice(&publish);
        assert!(decode_datagram(Bytes::from(two), v5, 1024).is_none());
        assert!(decode_datagram(Bytes::copy_from_slice(&publish[..5]), v5, 1024).is_none());
        assert!(decode_datagram(Bytes::new(), v5, 1024).is_none());
        assert!(decode_datagram(Bytes::from_static(&[0, 1, 2]), v5, 1024).is_none());
    }
}
