//! A WebSocket as a byte stream, so MQTT over WebSocket runs through the same read and write
//! loops as TCP ([`super::stream::serve`]): the payloads of binary messages, in order, are the
//! bytes read; each write is sent as one binary message.
//!
//! MQTT packets need not line up with WebSocket frames: a frame may hold part of a packet or
//! several packets [MQTT-6.0.0-2]; the read loop's decoder sees only bytes. Fragmented
//! messages are reassembled by tungstenite (bounded by `max_message_size`); pings are answered
//! by it too. A text message closes the connection with 1003 Unsupported Data [MQTT-6.0.0-1];
//! a frame or message over the size limit closes it with 1009 Message Too Big.

use std::io;
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::{Buf, Bytes};
use futures_util::{Sink, Stream};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::WebSocketStream;

/// A WebSocket read and written as bytes.
pub struct WsIo<S> {
    ws: WebSocketStream<S>,
    /// What is left of the last binary message.
    pending: Bytes,
    /// Why the connection ends, sent in the Close frame on shutdown.
    close: Option<(CloseCode, &'static str)>,
    /// The peer sent Close (or the stream ended): reads return end of stream.
    ended: bool,
    close_sent: bool,
}

impl<S> WsIo<S> {
    pub fn new(ws: WebSocketStream<S>) -> WsIo<S> {
        WsIo {
            ws,
            pending: Bytes::new(),
            close: None,
            ended: false,
            close_sent: false,
        }
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> AsyncRead for WsIo<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        loop {
            if !this.pending.is_empty() {
                let n = this.pending.len().min(buf.remaining());
                buf.put_slice(this.pending.get(..n).unwrap_or_default());
                this.pending.advance(n);
                return Poll::Ready(Ok(()));
            }
            if this.ended {
                return Poll::Ready(Ok(()));
            }
            match ready!(Pin::new(&mut this.ws).poll_next(cx)) {
                Some(Ok(Message::Binary(data))) => this.pending = data,
                Some(Ok(Message::Text(_))) => {
                    // [MQTT-6.0.0-1]: "If any other type of data frame is received the
                    // recipient MUST close the Network Connection."
                    this.close = Some((CloseCode::Unsupported, "MQTT needs binary frames"));
                    return Poll::Ready(Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        "text frame",
                    )));
                }
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {}
                Some(Ok(Message::Close(_))) | None => this.ended = true,
                Some(Err(e)) => {
                    if let tungstenite::Error::Capacity(_) = e {
                        this.close = Some((CloseCode::Size, "frame or message too big"));
                    } else {
                        this.close = Some((CloseCode::Protocol, "WebSocket protocol error"));
                    }
                    return Poll::Ready(Err(io::Error::other(e)));
                }
            }
        }
    }
}

impl<S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin> AsyncWrite for WsIo<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let ws = Pin::new(&mut self.ws);
        let mut ws = ws;
        ready!(ws.as_mut().poll_ready(cx)).map_err(io::Error::other)?;
        ws.start_send(Message::Binary(Bytes::copy_from_slice(buf)))
            .map_err(io::Error::other)?;
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.ws)
            .poll_flush(cx)
            .map_err(io::Error::other)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = &mut *self;
        if !this.close_sent {
            let mut ws = Pin::new(&mut this.ws);
            ready!(ws.as_mut().poll_ready(cx)).map_err(io::Error::other)?;
            let (code, reason) = this.close.unwrap_or((CloseCode::Normal, ""));
            // After the peer's Close tungstenite has answered it already; ours would fail.
            let _ = ws.start_send(Message::Close(Some(CloseFrame {
                code,
                reason: reason.into(),
            })));
            this.close_sent = true;
        }
        Pin::new(&mut this.ws)
            .poll_close(cx)
            .map_err(io::Error::other)
    }
}
