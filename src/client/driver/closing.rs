//! Ending a connection's streams: in the background after a failure (what is queued is
//! written first), or gracefully after DISCONNECT (the server's FIN, or a bounded wait).

use tokio::sync::mpsc;

use super::{Link, CLOSE_WAIT, QUIC_ABNORMAL, QUIC_NORMAL};
use crate::client::link::LinkEvent;
use crate::client::state::StreamKey;

/// Closes a failed connection in the background: queued bytes are written first.
pub(super) fn close_soon(mut link: Link) {
    link.stop_ext_tasks();
    let mut writers = Vec::new();
    for (_, io) in link.streams {
        let (writer, reader) = io.finish();
        reader.abort();
        writers.push(writer);
    }
    if let Some((endpoint, connection)) = link.quic {
        tokio::spawn(async move {
            for writer in writers {
                let _ = tokio::time::timeout(CLOSE_WAIT, writer).await;
            }
            let _ = tokio::time::timeout(CLOSE_WAIT, connection.closed()).await;
            connection.close(QUIC_ABNORMAL.into(), b"");
            drop(endpoint);
        });
    }
}

pub(super) async fn close_gracefully(mut link: Link, link_rx: &mut mpsc::Receiver<LinkEvent>) {
    link.stop_ext_tasks();
    let mut control_reader = None;
    let mut writers = Vec::new();
    for (stream, io) in link.streams {
        let (writer, reader) = io.finish();
        writers.push(writer);
        if stream == StreamKey::CONTROL {
            control_reader = Some(reader);
        } else {
            reader.abort();
        }
    }
    let server_closed = async {
        for writer in writers {
            let _ = writer.await;
        }
        match (&link.quic, control_reader) {
            (Some((_, connection)), reader) => {
                if let Some(reader) = reader {
                    reader.abort();
                }
                connection.closed().await;
            }
            (None, Some(reader)) => {
                let _ = reader.await;
            }
            (None, None) => {}
        }
    };
    // Keep reading reports meanwhile, so a reader is never stuck on a full channel.
    let drain = async { while link_rx.recv().await.is_some() {} };
    tokio::select! {
        _ = server_closed => {}
        _ = drain => {}
        _ = tokio::time::sleep(CLOSE_WAIT) => {}
    }
    if let Some((endpoint, connection)) = link.quic {
        connection.close(QUIC_NORMAL.into(), b"");
        drop(endpoint);
    }
}
