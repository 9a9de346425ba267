//! A userspace relay that adds a fixed delay in each direction, for UDP (QUIC) and TCP, on
//! loopback: what a long link does to round trips, without touching the network stack.
//! Used by `tests/zero_rtt.rs` and `examples/reconnect_rtt.rs` (included with `#[path]`).
//!
//! Order is kept per direction (a queue per direction, each packet sent at its arrival time
//! plus the delay); nothing is dropped.

#![allow(dead_code)]

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{mpsc, Mutex};
use tokio::task::JoinHandle;
use tokio::time::Instant;

/// Datagrams on their way, each with the instant it is to be sent.
type Queue = mpsc::UnboundedSender<(Instant, Vec<u8>)>;

/// A running relay; stops when dropped.
pub struct Relay {
    pub addr: SocketAddr,
    task: JoinHandle<()>,
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Relays UDP datagrams from clients to `target` and back, each delayed by `delay`.
pub async fn udp(target: SocketAddr, delay: Duration) -> Relay {
    let front = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
    let addr = front.local_addr().unwrap();
    let task = tokio::spawn(async move {
        // One upstream socket per client address, so the server sees one peer per client
        // (and a client that rebinds shows up as a new address, as through a NAT).
        let upstreams: Arc<Mutex<HashMap<SocketAddr, Queue>>> = Arc::default();
        let mut buf = vec![0u8; 65_535];
        loop {
            let Ok((n, client)) = front.recv_from(&mut buf).await else {
                return;
            };
            let at = Instant::now() + delay;
            let mut map = upstreams.lock().await;
            let tx = map.entry(client).or_insert_with(|| {
                let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
                let front = front.clone();
                tokio::spawn(async move {
                    let up = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
                    up.connect(target).await.unwrap();
                    // Server to client.
                    let (back_tx, mut back_rx) = mpsc::unbounded_channel::<(Instant, Vec<u8>)>();
                    let reader = {
                        let up = up.clone();
                        tokio::spawn(async move {
                            let mut buf = vec![0u8; 65_535];
                            while let Ok(n) = up.recv(&mut buf).await {
                                let _ = back_tx.send((Instant::now() + delay, buf[..n].to_vec()));
                            }
                        })
                    };
                    let back = tokio::spawn(async move {
                        while let Some((at, packet)) = back_rx.recv().await {
                            tokio::time::sleep_until(at).await;
                            let _ = front.send_to(&packet, client).await;
                        }
                    });
                    // Client to server.
                    while let Some((at, packet)) = rx.recv().await {
                        tokio::time::sleep_until(at).await;
                        let _ = up.send(&packet).await;
                    }
                    reader.abort();
                    back.abort();
                });
                tx
            });
            let _ = tx.send((at, buf[..n].to_vec()));
        }
    });
    Relay { addr, task }
}

/// Relays TCP connections to `target`, delaying bytes by `delay` in each direction.
pub async fn tcp(target: SocketAddr, delay: Duration) -> Relay {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let task = tokio::spawn(async move {
        while let Ok((client, _)) = listener.accept().await {
            tokio::spawn(async move {
                // Only bytes are delayed: the kernel completes the client's SYN/SYN-ACK with
                // the relay at once, so a caller that wants a real link's TCP handshake adds
                // that round trip itself (examples/reconnect_rtt.rs does).
                let Ok(server) = TcpStream::connect(target).await else {
                    return;
                };
                let _ = client.set_nodelay(true);
                let _ = server.set_nodelay(true);
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                let up = tokio::spawn(pipe(cr, sw, delay));
                let down = tokio::spawn(pipe(sr, cw, delay));
                let _ = tokio::join!(up, down);
            });
        }
    });
    Relay { addr, task }
}

async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    delay: Duration,
) {
    let (tx, mut rx) = mpsc::unbounded_channel::<(Instant, Option<Vec<u8>>)>();
    let writer = tokio::spawn(async move {
        while let Some((at, chunk)) = rx.recv().await {
            tokio::time::sleep_until(at).await;
            match chunk {
                Some(bytes) => {
                    if to.write_all(&bytes).await.is_err() {
                        return;
                    }
                }
                None => {
                    let _ = to.shutdown().await;
                    return;
                }
            }
        }
    });
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match from.read(&mut buf).await {
            Ok(0) | Err(_) => {
                let _ = tx.send((Instant::now() + delay, None));
                break;
            }
            Ok(n) => {
                let _ = tx.send((Instant::now() + delay, Some(buf[..n].to_vec())));
            }
        }
    }
    let _ = writer.await;
}
