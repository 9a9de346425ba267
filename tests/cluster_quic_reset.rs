//! The nodes of a cluster share the QUIC stateless-reset key (README "Cluster"): a QUIC client
//! of a node killed with SIGKILL learns at once that its connection is gone when its packets
//! reach another node (here: a node started on the dead node's UDP port, as a load balancer
//! would send them to a live node), instead of waiting for its idle timeout.
// Test code: a panic is a failed test, not a crashed broker ([lints] in Cargo.toml).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

#[path = "common/listening.rs"]
mod listening;
// The cluster support has its own copy of common/listening.rs.
#[allow(clippy::duplicate_mod)]
#[path = "cluster/support.rs"]
mod support;

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use listening::Listening;
use mqttd::client::{Client, ClientOptions, QuicOptions, Transport};
use mqttd::codec::QoS;
use support::Nats;

/// A node with QUIC on `udp`, TCP off; killed when dropped.
struct QuicNode(Child);

impl QuicNode {
    fn start(dir: &Path, name: &str, nats: &str, udp: SocketAddr) -> QuicNode {
        let data = dir.join(name);
        let log = dir.join(format!("{name}.log"));
        let listening = dir.join(format!("{name}.listening"));
        let out = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_mqttd"))
            .args(["--tcp", "off", "--admin", "off", "--quic"])
            .arg(udp.to_string())
            .arg("--data-dir")
            .arg(&data)
            .arg("--listening-file")
            .arg(&listening)
            .args(["--cluster", nats, "--cluster-node", name])
            .stdin(Stdio::null())
            .stdout(Stdio::from(out.try_clone().unwrap()))
            .stderr(Stdio::from(out))
            .spawn()
            .unwrap();
        match Listening::wait_for(&mut child, &listening, Duration::from_secs(10)) {
            Ok(Listening { quic: Some(_), .. }) => QuicNode(child),
            other => {
                let _ = child.kill();
                panic!(
                    "node {name} did not start ({other:?}):\n{}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                )
            }
        }
    }
}

impl Drop for QuicNode {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[tokio::test]
async fn a_client_of_a_dead_node_is_reset_by_another_node_at_once() {
    let nats = Nats::start();
    let dir = tempfile::tempdir().unwrap();
    let udp: SocketAddr = {
        let s = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        s.local_addr().unwrap()
    };
    let a = QuicNode::start(dir.path(), "a", &nats.url, udp);
    let options = ClientOptions::new(udp.to_string())
        .transport(Transport::Quic(QuicOptions {
            ca_file: None,
            insecure: true,
            server_name: None,
        }))
        .client_id("q");
    let (client, _) = Client::connect(options).await.unwrap();
    client
        .publish("x", "before", QoS::AtLeastOnce, false)
        .await
        .unwrap();

    drop(a); // SIGKILL
    let _b = QuicNode::start(dir.path(), "b", &nats.url, udp);
    let sent = Instant::now();
    let outcome = tokio::time::timeout(
        Duration::from_secs(5),
        client.publish("x", "after", QoS::AtLeastOnce, false),
    )
    .await;
    let took = sent.elapsed();
    println!(
        "connection ended {} ms after the first packet to node b: {outcome:?}",
        took.as_millis()
    );
    assert!(
        matches!(outcome, Ok(Err(_))),
        "the client learns at once that its connection is gone (stateless reset from node b), \
         not after its idle timeout: {outcome:?}"
    );
}
