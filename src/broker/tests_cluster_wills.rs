//! Wills and NATS loss in a cluster (cluster_wills.rs), deterministically: what the broker
//! tells the cluster about wills, a dead node's will published here, and a node that lost
//! NATS refusing and then dropping its clients.

use super::*;

fn clustered() -> Harness {
    let mut h = Harness::new();
    h.broker.enable_cluster("n1");
    h
}

fn with_will(client_id: &str, delay: Option<u32>) -> Connect {
    let mut c = connect_packet(client_id, ProtocolVersion::V5);
    let mut properties = Properties::default();
    properties.will_delay_interval = delay;
    c.will = Some(Will {
        topic: format!("will/{client_id}").into(),
        payload: Bytes::from_static(b"gone"),
        qos: QoS::AtLeastOnce,
        retain: false,
        properties,
    });
    c.properties.session_expiry_interval = Some(60);
    c
}

/// The will outputs so far: client id, and the will's topic and delay when set.
fn wills(h: &mut Harness) -> Vec<(String, Option<(String, u32)>)> {
    h.cluster
        .drain(..)
        .filter_map(|o| match o {
            ClusterOutput::Will { client_id, will } => Some((
                client_id.to_string(),
                will.map(|w| (w.message.topic.to_string(), w.delay_secs)),
            )),
            _ => None,
        })
        .collect()
}

#[test]
fn a_will_goes_to_the_cluster_and_is_withdrawn_when_published_or_discarded() {
    let mut h = clustered();
    let (x, _) = h.connect_with(with_will("x", Some(5)));
    assert_eq!(
        wills(&mut h),
        vec![("x".into(), Some(("will/x".into(), 5)))]
    );
    // A normal DISCONNECT discards it [MQTT-3.14.4-3]: withdrawn.
    h.send(x, Packet::Disconnect(Disconnect::new(ReasonCode::SUCCESS)));
    assert_eq!(wills(&mut h), vec![("x".into(), None)]);

    // Published here (connection lost, no delay): withdrawn after it went out.
    let (y, _) = h.connect_with(with_will("y", None));
    assert_eq!(wills(&mut h).len(), 1);
    h.lose(y);
    let outputs: Vec<&'static str> = h
        .cluster
        .iter()
        .map(|o| match o {
            ClusterOutput::Publish { .. } => "publish",
            ClusterOutput::Will { will: None, .. } => "withdrawn",
            _ => "other",
        })
        .collect();
    assert_eq!(outputs, vec!["publish", "withdrawn"]);
}

#[test]
fn a_client_without_a_will_tells_the_cluster_nothing_about_wills() {
    let mut h = clustered();
    h.connect("x", ProtocolVersion::V5);
    assert!(wills(&mut h).is_empty());
    // Alone: no will goes anywhere.
    let mut alone = Harness::new();
    alone.connect_with(with_will("x", None));
    assert!(alone.cluster.is_empty());
}

#[test]
fn the_will_delay_is_capped_by_the_session_expiry() {
    let mut h = clustered();
    let mut c = with_will("x", Some(500));
    c.properties.session_expiry_interval = Some(30);
    h.connect_with(c);
    assert_eq!(
        wills(&mut h),
        vec![("x".into(), Some(("will/x".into(), 30)))]
    );
}

fn dead_will(client_id: &str) -> LivenessEvent {
    LivenessEvent::Will {
        client_id: client_id.into(),
        message: Box::new(Message {
            topic: format!("will/{client_id}").into(),
            payload: Bytes::from_static(b"gone"),
            qos: QoS::AtMostOnce,
            retain: false,
            properties: Properties::default(),
            expires_at: None,
            origin: Some(client_id.into()),
            received_at: None,
            cluster_seq: None,
        }),
    }
}

#[test]
fn a_dead_nodes_will_is_published_here_and_to_the_cluster_unless_the_client_is_here() {
    let mut h = clustered();
    let w = h.connect("watcher", ProtocolVersion::V5);
    h.subscribe(w, "will/#", QoS::AtMostOnce);
    h.cluster.clear();
    h.broker.cluster_liveness(dead_will("x"), h.now);
    h.pump();
    let got: Vec<String> = publishes(&h.recv(w))
        .iter()
        .map(|p| p.topic.to_string())
        .collect();
    assert_eq!(got, vec!["will/x".to_string()]);
    assert!(
        h.cluster
            .iter()
            .any(|o| matches!(o, ClusterOutput::Publish { message, .. } if &message.topic[..] == "will/x")),
        "the other nodes get it too"
    );

    // The client reconnected to this node: it is alive, no will.
    h.connect("y", ProtocolVersion::V5);
    h.broker.cluster_liveness(dead_will("y"), h.now);
    h.pump();
    assert!(publishes(&h.recv(w)).is_empty());
}

#[test]
fn a_node_without_nats_refuses_connections_then_drops_its_clients_keeping_their_wills() {
    let mut h = clustered();
    let w = h.connect("watcher", ProtocolVersion::V5);
    h.subscribe(w, "will/#", QoS::AtMostOnce);
    let (x, _) = h.connect_with(with_will("x", None));
    // A session that ends with its connection.
    let mut clean = with_will("c", None);
    clean.properties.session_expiry_interval = None;
    let (c, _) = h.connect_with(clean);
    h.cluster.clear();

    h.broker
        .cluster_liveness(LivenessEvent::Link { up: false }, h.now);
    let (_, ack) = h.connect_with(connect_packet("late", ProtocolVersion::V5));
    assert_eq!(ack.code, ReasonCode::SERVER_UNAVAILABLE, "[MQTT-3.2.2-7]");
    let (_, ack) = h.connect_with(connect_packet("late", ProtocolVersion::V3_1_1));
    assert_eq!(ack.code, ReasonCode::SERVER_UNAVAILABLE, "0x03 on the wire");
    assert!(
        !h.closed.contains(&x),
        "existing clients stay during the grace"
    );

    h.broker.cluster_liveness(LivenessEvent::Detach, h.now);
    h.pump();
    for conn in [x, w, c] {
        assert!(h.closed.contains(&conn));
        assert_eq!(
            disconnect_code(&h.recv(conn)),
            Some(ReasonCode::USE_ANOTHER_SERVER)
        );
    }
    // The wills stay with the cluster: neither published here nor withdrawn, claims kept
    // (c's session ended, x's stays here).
    assert!(
        h.cluster.iter().all(|o| !matches!(
            o,
            ClusterOutput::Publish { .. }
                | ClusterOutput::Will { .. }
                | ClusterOutput::Release { .. }
        )),
        "{:?}",
        h.cluster
    );

    assert!(h.broker.client_ids.contains_key("x") && !h.broker.client_ids.contains_key("c"));

    h.broker
        .cluster_liveness(LivenessEvent::Link { up: true }, h.now);
    let (_, ack) = h.connect_with(connect_packet("back", ProtocolVersion::V5));
    assert_eq!(ack.code, ReasonCode::SUCCESS, "accepting again");
}
