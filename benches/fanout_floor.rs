//! The floor of fan-out over TCP on this machine: what it costs to do only the part of a
//! broker's fan-out that no broker can skip, so that `mqttd bench fan-out` can be read as
//! "mqttd / floor".
//!
//! A relay thread reads one publisher's socket and writes every read, as it is, to each of N
//! subscriber sockets (the same bytes a broker sends for QoS 0 PUBLISH packets to N
//! subscribers of one topic; one write per subscriber per read, which is the batching mqttd's
//! writers do at best): no MQTT, no parsing, no queues, no wake-ups between tasks, blocking
//! system calls only. The relay thread's CPU time per delivered message is the floor of a
//! broker's CPU per delivery. The load is shaped like `mqttd bench fan-out -q 0 -s 100`: one
//! publisher writing 3.1.1 PUBLISH packets with a 100-byte payload as fast as TCP takes them,
//! N subscribers reading on one tokio thread.
//!
//! ```sh
//! cargo bench --bench fanout_floor -- -c 100 -n 20000    # prints one line and a JSON object
//! ```
//!
//! Without `--bench` (under `cargo test --benches`) it runs a tiny relay and checks that
//! every byte arrives.
// A measurement program: a failed socket call ends it with the reason.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::Instant;

use tokio::io::AsyncReadExt;

/// One MQTT 3.1.1 QoS 0 PUBLISH: topic `mqttd-bench/floor`, `size` bytes of payload.
fn publish_packet(size: usize) -> Vec<u8> {
    let topic = b"mqttd-bench/floor";
    let remaining = 2 + topic.len() + size;
    let mut p = vec![0x30];
    let mut n = remaining;
    loop {
        let mut byte = (n % 128) as u8;
        n /= 128;
        if n > 0 {
            byte |= 0x80;
        }
        p.push(byte);
        if n == 0 {
            break;
        }
    }
    p.extend_from_slice(&(topic.len() as u16).to_be_bytes());
    p.extend_from_slice(topic);
    p.resize(p.len() + size, b'x');
    p
}

/// CPU time (user + system) of the calling thread, in clock ticks.
fn thread_cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/thread-self/stat").unwrap_or_default();
    // Fields after the command name (which ends with ')'): utime is the 12th, stime the 13th.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    get(11) + get(12)
}

struct Outcome {
    messages: usize,
    subscribers: usize,
    seconds: f64,
    relay_cpu_s: f64,
}

fn run(subscribers: usize, messages: usize, size: usize) -> Outcome {
    let packet = publish_packet(size);
    let total = packet.len() * messages;
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("address");

    // Subscribers: N sockets read on one thread until each has every byte.
    let subs = std::thread::spawn(move || {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("runtime");
        rt.block_on(async move {
            let mut tasks = Vec::new();
            for _ in 0..subscribers {
                let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
                tasks.push(tokio::spawn(async move {
                    let mut buf = vec![0u8; 64 * 1024];
                    let mut got = 0;
                    while got < total {
                        match s.read(&mut buf).await {
                            Ok(0) | Err(_) => break,
                            Ok(n) => got += n,
                        }
                    }
                    got
                }));
            }
            let mut all = Vec::new();
            for t in tasks {
                all.push(t.await.unwrap_or(0));
            }
            all
        })
    });
    let mut outs: Vec<TcpStream> = (0..subscribers)
        .map(|_| listener.accept().expect("accept").0)
        .collect();
    for s in &outs {
        let _ = s.set_nodelay(true);
    }

    // The relay: every read goes to every subscriber, one write each.
    let relay = std::thread::spawn(move || {
        let (mut input, _) = listener.accept().expect("accept publisher");
        let cpu0 = thread_cpu_ticks();
        let mut buf = vec![0u8; 64 * 1024];
        let mut relayed = 0;
        while relayed < total {
            let n = match input.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            for out in &mut outs {
                out.write_all(&buf[..n]).expect("write to a subscriber");
            }
            relayed += n;
        }
        thread_cpu_ticks() - cpu0
    });

    // The publisher: packets gathered 64 at a time, as fast as TCP takes them.
    let started = Instant::now();
    let mut publisher = TcpStream::connect(addr).expect("connect publisher");
    let _ = publisher.set_nodelay(true);
    let chunk: Vec<u8> = packet.repeat(64);
    let mut sent = 0;
    while sent < messages {
        let k = (messages - sent).min(64);
        publisher
            .write_all(&chunk[..k * packet.len()])
            .expect("publish");
        sent += k;
    }
    let ticks = relay.join().expect("relay");
    let got = subs.join().expect("subscribers");
    let seconds = started.elapsed().as_secs_f64();
    assert!(
        got.iter().all(|g| *g == total),
        "every subscriber gets every byte"
    );
    // Clock ticks are 1/100 s on Linux (USER_HZ).
    Outcome {
        messages,
        subscribers,
        seconds,
        relay_cpu_s: ticks as f64 / 100.0,
    }
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let value = |flag: &str, default: usize| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    if !args.iter().any(|a| a == "--bench") {
        // `cargo test --benches`: a quick check that the relay delivers everything.
        let o = run(3, 500, 100);
        assert_eq!((o.messages, o.subscribers), (500, 3));
        return;
    }
    let o = run(value("-c", 100), value("-n", 20_000), value("-s", 100));
    let deliveries = (o.messages * o.subscribers) as f64;
    println!(
        "fan-out floor: {} messages x {} subscribers in {:.2} s = {:.0} deliveries/s; relay CPU {:.2} s = {:.3} us per delivery",
        o.messages,
        o.subscribers,
        o.seconds,
        deliveries / o.seconds,
        o.relay_cpu_s,
        o.relay_cpu_s * 1e6 / deliveries
    );
    println!(
        "{{\"messages\":{},\"subscribers\":{},\"seconds\":{:.3},\"deliveries_per_s\":{:.0},\"relay_cpu_s\":{:.2},\"cpu_us_per_delivery\":{:.4}}}",
        o.messages,
        o.subscribers,
        o.seconds,
        deliveries / o.seconds,
        o.relay_cpu_s,
        o.relay_cpu_s * 1e6 / deliveries
    );
}
