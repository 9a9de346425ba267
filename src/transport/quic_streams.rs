//! Opening a client-initiated QUIC stream: an optional MQTT-next flow header, then MQTT
//! packets. See `proto-ext/flows.md`.
//!
//! The header is read here, checked against the kind of stream it opens, and the bytes read
//! past it are handed on through [`Prefixed`], so the MQTT read loop sees the stream as if the
//! header had never been there.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Buf, Bytes, BytesMut};
use quinn::{RecvStream, VarInt};
use tokio::io::{AsyncRead, ReadBuf};

use crate::codec::flow::{self, FlowHeader, FLOW_CLIENT_DATA};

/// Stream error codes (STOP_SENDING / RESET_STREAM) of the MQTT-next draft that mqttd uses.
pub mod stream_error {
    /// A recovery was asked for (clean = 0, abort if no state = 1) but no flow state exists.
    pub const NO_FLOW_STATE: u32 = 0xB3;
    /// The flow type does not fit the stream (e.g. a server data flow opened by a client).
    pub const STREAM_TYPE: u32 = 0xB5;
    /// The flow id is not a client-initiated id, or the header is malformed.
    pub const BAD_FLOW_ID: u32 = 0xB6;
    /// User-defined flows (0x14) are refused.
    pub const FLOW_REFUSED: u32 = 0xBE;
}

/// What a client stream carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StreamKind {
    /// The first bidirectional stream.
    Control,
    /// A later bidirectional stream, or a unidirectional one.
    Data,
}

/// The outcome of reading the start of a stream.
pub enum Opening {
    /// MQTT packets follow (after the header, if there was one).
    Mqtt {
        reader: Prefixed<RecvStream>,
        header: Option<FlowHeader>,
    },
    /// The flow is refused with this stream error code; the stream is stopped.
    Refused {
        recv: RecvStream,
        code: u32,
        why: &'static str,
    },
    /// The stream failed before anything could be read.
    Failed,
}

/// Reads an optional flow header from the start of `recv`.
pub async fn open(mut recv: RecvStream, kind: StreamKind) -> Opening {
    let mut buf = BytesMut::new();
    let header = loop {
        if let Some(&first) = buf.first() {
            if !flow::starts_flow(first) {
                break None;
            }
            match flow::parse(&buf) {
                Ok(Some((header, len))) => {
                    buf.advance(len);
                    break Some(header);
                }
                Ok(None) => {}
                Err(_) => {
                    return Opening::Refused {
                        recv,
                        code: stream_error::BAD_FLOW_ID,
                        why: "malformed flow header",
                    }
                }
            }
        }
        match recv.read_chunk(flow::MAX_HEADER_LEN, true).await {
            Ok(Some(chunk)) => buf.extend_from_slice(&chunk.bytes),
            // End of stream: whatever was read is all there is (an incomplete header is refused).
            Ok(None) if buf.is_empty() => break None,
            Ok(None) => {
                return Opening::Refused {
                    recv,
                    code: stream_error::BAD_FLOW_ID,
                    why: "incomplete flow header",
                }
            }
            Err(_) => return Opening::Failed,
        }
    };
    if let Some(h) = &header {
        if let Err((code, why)) = check(h, kind) {
            return Opening::Refused { recv, code, why };
        }
    }
    Opening::Mqtt {
        reader: Prefixed {
            prefix: buf.freeze(),
            inner: recv,
        },
        header,
    }
}

/// Which headers each kind of stream may open with.
fn check(header: &FlowHeader, kind: StreamKind) -> Result<(), (u32, &'static str)> {
    match (header, kind) {
        (FlowHeader::UserDefined, _) => {
            Err((stream_error::FLOW_REFUSED, "user-defined flows are refused"))
        }
        (FlowHeader::Control { id, .. }, StreamKind::Control) if id.0 == 0 => Ok(()),
        (FlowHeader::Control { .. }, StreamKind::Control) => {
            Err((stream_error::BAD_FLOW_ID, "control flow id must be 0"))
        }
        (
            FlowHeader::Data {
                kind: FLOW_CLIENT_DATA,
                id,
                flags,
                ..
            },
            StreamKind::Data,
        ) => {
            if id.is_server_initiated() {
                Err((
                    stream_error::BAD_FLOW_ID,
                    "client data flow with a server flow id",
                ))
            } else if !flags.clean() && flags.abort_if_no_state() {
                // Flow state does not outlive the connection (the MQTT session does).
                Err((
                    stream_error::NO_FLOW_STATE,
                    "no state to recover for this flow",
                ))
            } else {
                Ok(())
            }
        }
        _ => Err((
            stream_error::STREAM_TYPE,
            "flow type does not fit this stream",
        )),
    }
}

/// A reader that yields `prefix` before reading from `inner`.
pub struct Prefixed<R> {
    prefix: Bytes,
    inner: R,
}

impl<R> Prefixed<R> {
    pub fn inner(&self) -> &R {
        &self.inner
    }

    pub fn inner_mut(&mut self) -> &mut R {
        &mut self.inner
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for Prefixed<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if !self.prefix.is_empty() {
            let n = self.prefix.len().min(buf.remaining());
            buf.put_slice(self.prefix.get(..n).unwrap_or_default());
            self.prefix.advance(n);
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// Stops a refused stream with its code.
pub fn refuse(mut recv: RecvStream, code: u32, why: &str) {
    tracing::debug!(code, why, "QUIC stream refused");
    let _ = recv.stop(VarInt::from_u32(code));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::flow::{FlowFlags, FlowId};

    #[test]
    fn headers_must_fit_their_stream() {
        let control = FlowHeader::Control {
            id: FlowId(0),
            flags: FlowFlags(0),
        };
        let data = |id, flags| FlowHeader::Data {
            kind: 0x12,
            id: FlowId(id),
            expire_secs: 0,
            flags: FlowFlags(flags),
        };
        assert!(check(&control, StreamKind::Control).is_ok());
        assert_eq!(
            check(&control, StreamKind::Data).unwrap_err().0,
            stream_error::STREAM_TYPE
        );
        assert!(check(&data(2, 0x01), StreamKind::Data).is_ok());
        assert_eq!(
            check(&data(3, 0), StreamKind::Data).unwrap_err().0,
            stream_error::BAD_FLOW_ID
        );
        assert_eq!(
            check(&data(2, 0x02), StreamKind::Data).unwrap_err().0,
            stream_error::NO_FLOW_STATE
        );
        assert!(
            check(&data(2, 0x50), StreamKind::Data).is_ok(),
            "recovery without abort proceeds fresh"
        );
        assert_eq!(
            check(&FlowHeader::UserDefined, StreamKind::Data)
                .unwrap_err()
                .0,
            stream_error::FLOW_REFUSED
        );
        let server = FlowHeader::Data {
            kind: 0x13,
            id: FlowId(3),
            expire_secs: 0,
            flags: FlowFlags(0),
        };
        assert_eq!(
            check(&server, StreamKind::Data).unwrap_err().0,
            stream_error::STREAM_TYPE
        );
    }

    #[tokio::test]
    async fn prefixed_reader_yields_the_prefix_first() {
        use tokio::io::AsyncReadExt;
        let mut r = Prefixed {
            prefix: Bytes::from_static(b"ab"),
            inner: &b"cd"[..],
        };
        let mut out = Vec::new();
        r.read_to_end(&mut out).await.unwrap();
        assert_eq!(out, b"abcd");
    }
}
