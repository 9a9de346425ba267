//! Tests of `mqttd bench`'s arguments and the plan made from them (`super`).

use super::*;
use clap::Parser;

#[derive(clap::Parser, Debug)]
struct Harness {
    #[command(subcommand)]
    command: Sub,
}

#[derive(clap::Subcommand, Debug)]
enum Sub {
    #[command(disable_help_flag = true)]
    Bench(BenchArgs),
}

fn args(line: &[&str]) -> Result<BenchArgs, clap::Error> {
    let argv = ["mqttd", "bench"].into_iter().chain(line.iter().copied());
    Harness::try_parse_from(argv).map(|h| match h.command {
        Sub::Bench(a) => a,
    })
}

fn plan(line: &[&str]) -> Result<Plan, String> {
    Plan::new(&args(line).map_err(|e| e.to_string())?, 0xbe0c)
}

#[test]
fn fan_in_defaults() {
    let p = plan(&["fan-in"]).unwrap();
    assert_eq!((p.publishers, p.subscribers, p.connections), (4, 1, 0));
    assert_eq!(p.servers, ["127.0.0.1:1883"]);
    assert_eq!(p.duration, Some(DEFAULT_DURATION));
    assert_eq!((p.count, p.rate, p.qos), (None, None, QoS::AtMostOnce));
    assert_eq!((p.size, p.inflight, p.quic_mode), (100, 64, None));
    assert_eq!(p.topic, "mqttd-bench/be0c");
    assert_eq!(p.publisher_topic(3), "mqttd-bench/be0c/3");
    assert_eq!(p.subscriber_filter(0), "mqttd-bench/be0c/#");
    assert_eq!(p.publisher_id(3), 0xbe0c_0003);
    assert_eq!(p.client_id('p', 12), "bench-be0c-p12");
    assert!(p.client_id('s', 65535).len() <= 23);
    assert!(p.delivers(2, 0));
    assert!(p.progress && !p.json);
    let options = p.client_options("127.0.0.1:1883", "x".into());
    assert_eq!(options.transport, Transport::Tcp);
    assert_eq!(options.version, ProtocolVersion::V5);
    assert_eq!(options.receive_maximum, 128);
}

#[test]
fn every_flag() {
    let p = plan(&[
        "pairs",
        "-h",
        "::1",
        "-p",
        "2884",
        "--transport",
        "quic",
        "--quic-mode",
        "multi",
        "--insecure",
        "-V",
        "311",
        "-c",
        "8",
        "-q",
        "2",
        "-s",
        "512",
        "-n",
        "1000",
        "-r",
        "250.5",
        "--inflight",
        "16",
        "--concurrency",
        "4",
        "-t",
        "load/test/",
        "--drain",
        "2.5",
        "--receive-maximum",
        "1000",
        "--broker-pid",
        "42",
        "--json",
        "--quiet",
        "-k",
        "0",
        "-u",
        "me",
        "-P",
        "pw",
    ])
    .unwrap();
    assert_eq!(p.servers, ["[::1]:2884"]);
    assert_eq!(p.quic_mode, Some(QuicMode::Multi));
    assert_eq!((p.publishers, p.subscribers), (8, 8));
    assert_eq!(
        (p.qos, p.size, p.count),
        (QoS::ExactlyOnce, 512, Some(1000))
    );
    assert_eq!(p.duration, None, "a count alone has no time limit");
    assert_eq!((p.rate, p.inflight, p.concurrency), (Some(250.5), 16, 4));
    assert_eq!(p.drain, Duration::from_millis(2500));
    assert_eq!((p.broker_pid, p.json, p.progress), (Some(42), true, false));
    assert_eq!(p.publisher_topic(5), "load/test/5");
    assert_eq!(p.subscriber_filter(5), "load/test/5");
    assert!(p.delivers(5, 5) && !p.delivers(5, 4));
    let options = p.client_options("127.0.0.1:1883", "c".into());
    assert!(matches!(&options.transport, Transport::Quic(q) if q.insecure));
    assert_eq!(options.version, ProtocolVersion::V3_1_1);
    assert_eq!(options.keep_alive, Duration::ZERO);
    assert_eq!(options.username.as_deref(), Some("me"));
    assert_eq!(options.receive_maximum, 1000);
}

#[test]
fn scenario_shapes() {
    let p = plan(&["fan-out", "-c", "100", "-d", "30s"]).unwrap();
    assert_eq!((p.publishers, p.subscribers), (1, 100));
    assert_eq!(p.duration, Some(Duration::from_secs(30)));
    assert_eq!(p.publisher_topic(0), p.subscriber_filter(99));
    let p = plan(&["conn", "-c", "1000", "--hold", "5", "-r", "200"]).unwrap();
    assert_eq!((p.connections, p.publishers, p.subscribers), (1000, 0, 0));
    assert_eq!((p.duration, p.hold), (None, Some(Duration::from_secs(5))));
    let p = plan(&["conn"]).unwrap();
    assert_eq!(p.connections, 100);
    let p = plan(&["sub", "-t", "x"]).unwrap();
    assert_eq!((p.publishers, p.subscribers), (0, 1));
    assert_eq!(p.subscriber_filter(0), "x/#");
    let p = plan(&["pub", "--transport", "quic"]).unwrap();
    assert_eq!(p.servers, ["127.0.0.1:1884"]);
    assert_eq!(p.quic_mode, Some(QuicMode::Single));
    assert!(
        p.describe().contains("QUIC single-stream"),
        "{}",
        p.describe()
    );
    let p = plan(&["pub", "--transport", "ws"]).unwrap();
    assert_eq!(
        (p.servers[0].as_str(), p.quic_mode),
        ("127.0.0.1:8083", None)
    );
    assert!(p.describe().contains("WebSocket"), "{}", p.describe());
    let p = plan(&["conn", "--transport", "mqtts", "--insecure"]).unwrap();
    assert_eq!(
        (p.servers[0].as_str(), p.quic_mode),
        ("127.0.0.1:8883", None)
    );
    assert!(p.describe().contains("MQTTS"), "{}", p.describe());
    let options = p.client_options("127.0.0.1:8883", "c".into());
    assert!(matches!(&options.transport, Transport::Mqtts(t) if t.insecure));
    assert!(plan(&["conn", "--transport", "mqtts", "--quic-mode", "multi"]).is_err());
}

#[test]
fn per_topic_streams_and_datagrams_set_the_client_options() {
    let quic = ["fan-in", "--transport", "quic", "--insecure", "--quic-mode"];
    let p = plan(&[&quic[..], &["topics", "--per-topic"]].concat()).unwrap();
    assert!(p.per_topic);
    let o = p.client_options("127.0.0.1:1883", "x".into());
    assert_eq!(o.stream_mapping, Some(StreamMapping::Topic));
    assert!(!o.receive_datagrams && !o.send_datagrams);
    assert!(p.describe().contains("per-topic server streams"));
    let o = plan(&[&quic[..], &["datagram"]].concat())
        .unwrap()
        .client_options("127.0.0.1:1883", "x".into());
    assert!(o.receive_datagrams && o.send_datagrams && o.stream_mapping.is_none());
}

#[test]
fn bad_combinations_are_refused() {
    for (line, why) in [
        (&["fan-in", "--quic-mode", "multi"][..], "--quic-mode needs"),
        (&["fan-in", "--insecure"][..], "need --transport quic"),
        (&["fan-in", "-s", "15"][..], "too small"),
        (&["fan-in", "--hold", "3"][..], "--hold is for"),
        (&["conn", "-n", "3"][..], "do not apply"),
        (&["fan-in", "-t", "a/#"][..], "without wildcards"),
        (
            &[
                "fan-in",
                "--transport",
                "quic",
                "--quic-mode",
                "datagram",
                "-q",
                "1",
            ][..],
            "QoS 0 only",
        ),
        (
            &[
                "fan-in",
                "--transport",
                "quic",
                "--quic-mode",
                "topics",
                "-V",
                "311",
            ][..],
            "use -V 5",
        ),
        (&["fan-out", "--per-topic"][..], "--per-topic is for"),
    ] {
        let error = plan(line).unwrap_err();
        assert!(error.contains(why), "{line:?}: {error}");
    }
    for line in [
        &["bogus"][..],
        &["fan-in", "-q", "3"],
        &["fan-in", "-c", "0"],
        &["fan-in", "-r", "0"],
        &["fan-in", "-d", "-1"],
        &["fan-in", "--inflight", "0"],
        &["fan-in", "--transport", "datagram"],
        &["fan-in", "--transport", "quic", "--quic-mode", "diagonal"],
        &[
            "fan-in",
            "--transport",
            "quic",
            "--insecure",
            "--cafile",
            "c.pem",
        ],
    ] {
        assert!(args(line).is_err(), "{line:?} should not parse");
    }
    let help = args(&["--help"]).unwrap_err();
    assert_eq!(help.kind(), clap::error::ErrorKind::DisplayHelp);
}

#[test]
fn several_servers_spread_the_clients() {
    let p = plan(&["fan-in", "-h", "a,b", "-p", "1883", "-c", "3"]).unwrap();
    assert_eq!(p.servers, ["a:1883", "b:1883"]);
    // Subscribers from the first server, publishers from the second: one publisher and
    // one subscriber over two servers cross nodes.
    assert_eq!(p.server_for('s', 0), "a:1883");
    assert_eq!(
        (0..3).map(|i| p.server_for('p', i)).collect::<Vec<_>>(),
        ["b:1883", "a:1883", "b:1883"]
    );
    let p = plan(&["fan-out", "-p", "1883,1893,1903"]).unwrap();
    assert_eq!(
        p.servers,
        ["127.0.0.1:1883", "127.0.0.1:1893", "127.0.0.1:1903"]
    );
    assert!(p
        .describe()
        .contains("127.0.0.1:1883,127.0.0.1:1893,127.0.0.1:1903"));
    let p = plan(&["pub", "-h", "a,b", "-p", "1,2"]).unwrap();
    assert_eq!(p.servers, ["a:1", "b:2"]);
    let error = plan(&["pub", "-h", "a,b", "-p", "1,2,3"]).unwrap_err();
    assert!(error.contains("2 hosts and -p 3 ports"), "{error}");
    assert_eq!(
        plan(&["pub", "-h", "::1,::2"]).unwrap().servers,
        ["[::1]:1883", "[::2]:1883"]
    );
}
