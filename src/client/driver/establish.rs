//! Making a connection current: CONNECT/CONNACK over a freshly dialled stream (with what was
//! pipelined behind the CONNECT, in 0-RTT when the QUIC stream was opened early), then its
//! stream tasks, server-stream and datagram readers.

use std::sync::Arc;
use std::time::Instant;

use ahash::AHashMap;

use super::{Driver, EarlyOp, Link, QUIC_ABNORMAL};
use crate::client::error::ClientError;
use crate::client::link::{self, LinkParts, ReadSetup, StreamIo, Unwritten};
use crate::client::quic_ext::Counters;
use crate::client::server_streams::{self, ExtSetup};
use crate::client::state::StreamKey;
use crate::client::types::{Connected, ZeroRtt};
use crate::codec::ReasonCode;

impl Driver {
    /// Runs CONNECT/CONNACK over `parts` and makes it the current connection. `pipelined`
    /// requests go out right behind the CONNECT (in the same 0-RTT flight when the QUIC
    /// stream was opened in 0-RTT).
    pub async fn establish(
        &mut self,
        parts: LinkParts,
        clean_start: bool,
        pipelined: Vec<EarlyOp>,
    ) -> Result<Connected, ClientError> {
        let LinkParts {
            mut reader,
            mut writer,
            quic,
            early,
            fallback,
        } = parts;
        let limit = self.options.decode_limit();
        let timeout = self.options.connect_timeout;
        let now = Instant::now();
        self.state.begin_connect(clean_start, now);
        for op in pipelined {
            self.pipeline(op, now);
        }
        let first = link::encode_queued(&mut self.state);
        let mut zero_rtt = ZeroRtt::NotAttempted;
        let result = match early {
            None => {
                link::exchange(
                    &mut self.state,
                    &mut reader,
                    &mut writer,
                    &first,
                    limit,
                    timeout,
                )
                .await
            }
            Some(mut accepted) => {
                zero_rtt = ZeroRtt::Accepted;
                let mut verdict = None;
                let attempt = {
                    let exchange = link::exchange(
                        &mut self.state,
                        &mut reader,
                        &mut writer,
                        &first,
                        limit,
                        timeout,
                    );
                    tokio::pin!(exchange);
                    loop {
                        tokio::select! {
                            result = &mut exchange => break Some(result),
                            ok = &mut accepted, if verdict.is_none() => {
                                verdict = Some(ok);
                                if !ok {
                                    break None;
                                }
                            }
                        }
                    }
                };
                let rejected = match &attempt {
                    Some(Ok(_)) => false,
                    // The stream may fail (ZeroRttRejected) before the verdict is seen.
                    Some(Err(_)) => match verdict {
                        Some(ok) => !ok,
                        None => !tokio::time::timeout(timeout, &mut accepted)
                            .await
                            .unwrap_or(true),
                    },
                    None => true,
                };
                match (attempt, rejected, &quic) {
                    (Some(result), false, _) => result,
                    (_, _, Some((_, connection))) => {
                        // The server refused the early data: same bytes, new stream, 1-RTT.
                        tracing::debug!(
                            "0-RTT rejected; sending CONNECT again after the handshake"
                        );
                        zero_rtt = ZeroRtt::Rejected;
                        match crate::client::quic::open_stream(connection).await {
                            Ok((send, recv)) => {
                                reader = Box::new(recv);
                                writer = Box::new(send);
                                link::exchange(
                                    &mut self.state,
                                    &mut reader,
                                    &mut writer,
                                    &first,
                                    limit,
                                    timeout,
                                )
                                .await
                            }
                            Err(e) => Err(e),
                        }
                    }
                    (_, _, None) => Err(ClientError::ConnectionLost("0-RTT was rejected".into())),
                }
            }
        };
        let buffered = match result {
            Ok(buffered) => buffered,
            Err(error) => {
                if let Some((_, connection)) = quic {
                    connection.close(QUIC_ABNORMAL.into(), b"");
                }
                self.loss = error.to_string();
                self.state.connection_lost();
                self.flush();
                return Err(error);
            }
        };
        self.epoch += 1;
        let unwritten = Arc::new(Unwritten::default());
        let setup = ReadSetup {
            epoch: self.epoch,
            stream: StreamKey::CONTROL,
            version: self.state.version(),
            max_packet_size: limit,
            buffered,
        };
        let control = StreamIo::spawn(
            setup,
            reader,
            writer,
            self.link_tx.clone(),
            unwritten.clone(),
        );
        self.shared.set_quic(quic.as_ref().map(|(_, c)| c.clone()));
        let mut streams = AHashMap::new();
        streams.insert(StreamKey::CONTROL, control);
        let ext_tasks = match &quic {
            Some((_, connection)) => {
                let setup = ExtSetup {
                    epoch: self.epoch,
                    version: self.state.version(),
                    max_packet_size: limit,
                    events: self.link_tx.clone(),
                    counters: self.shared.counters.clone(),
                };
                vec![
                    tokio::spawn(server_streams::accept_streams(
                        connection.clone(),
                        setup.clone(),
                    )),
                    tokio::spawn(server_streams::read_datagrams(connection.clone(), setup)),
                ]
            }
            None => Vec::new(),
        };
        self.link = Some(Link {
            epoch: self.epoch,
            streams,
            quic,
            unwritten,
            ext_tasks,
        });
        self.flush();
        self.shared.up.send_replace(true);
        if let Some(redial) = &mut self.redial {
            redial.at = None;
            redial.attempt = 0;
        }
        let mut connected = self.connected.take().ok_or_else(|| ClientError::Protocol {
            code: ReasonCode::PROTOCOL_ERROR,
            message: "the handshake ended without CONNACK".into(),
        })?;
        connected.zero_rtt = zero_rtt;
        let counters = &self.shared.counters;
        match zero_rtt {
            ZeroRtt::Accepted => Counters::add(&counters.zero_rtt_accepted, 1),
            ZeroRtt::Rejected => Counters::add(&counters.zero_rtt_rejected, 1),
            ZeroRtt::NotAttempted => {}
        }
        if fallback {
            Counters::add(&counters.fallback_connections, 1);
        }
        // Checks for QUIC's return need automatic reconnection to move the session.
        let every = self
            .options
            .fallback
            .as_ref()
            .and_then(|f| f.retry_quic)
            .filter(|_| self.redial.is_some());
        self.quic_return.connected(fallback, every, Instant::now());
        Ok(connected)
    }
}
