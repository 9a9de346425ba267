//! A relay that delays everything by a fixed time in each direction, for a long link on
//! loopback where `tc netem` is not available; and, with no delay, a separate port in front of
//! the broker so that `benches/lossy.sh` can make one client's path lossy and not the others'.
//!
//! ```sh
//! cargo run --release --example delay_relay -- udp 127.0.0.1:1884 10   # KIND TARGET ONE_WAY_MS
//! ```
//!
//! Prints `<kind> <address>` (the address to connect to) on stdout, then relays until killed.
//! QUIC runs end to end through the UDP relay, so its RTT estimate and loss recovery see the
//! delay. The TCP relay terminates TCP: each leg is its own TCP connection, and the delay sits
//! between them, invisible to either leg's loss recovery.
// Example code: brevity over error handling ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "../tests/common/relay.rs"]
mod relay;

use std::net::SocketAddr;
use std::time::Duration;

#[tokio::main]
async fn main() {
    let mut args = std::env::args().skip(1);
    let (Some(kind), Some(target), Some(ms)) = (args.next(), args.next(), args.next()) else {
        eprintln!("usage: delay_relay udp|tcp TARGET_ADDR ONE_WAY_MS");
        std::process::exit(2);
    };
    let target: SocketAddr = target.parse().unwrap_or_else(|e| {
        eprintln!("delay_relay: {target:?} is not an address: {e}");
        std::process::exit(2);
    });
    let ms: u64 = ms.parse().unwrap_or_else(|e| {
        eprintln!("delay_relay: {ms:?} is not a number of milliseconds: {e}");
        std::process::exit(2);
    });
    let delay = Duration::from_millis(ms);
    let relay = match kind.as_str() {
        "udp" => relay::udp(target, delay).await,
        "tcp" => relay::tcp(target, delay).await,
        other => {
            eprintln!("delay_relay: {other:?}: give udp or tcp");
            std::process::exit(2);
        }
    };
    println!("{kind} {}", relay.addr);
    std::future::pending::<()>().await;
}
