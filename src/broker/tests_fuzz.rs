//! Regression tests for what the fuzz targets (`fuzz/`, `src/fuzzing/`) found, one per bug.

use super::*;

/// broker_session: a client whose Maximum Packet Size cannot take the CONNACK was closed but
/// stayed in the broker (connection, session, client id) until the transport reported it lost,
/// which the QUIC glue never does after a close the broker asked for.
#[test]
fn a_connection_closed_for_a_packet_it_cannot_take_is_forgotten_at_once() {
    let mut h = Harness::new();
    let conn = h.open();
    let mut c = connect_packet("tiny", V5);
    c.properties.maximum_packet_size = Some(2);
    h.send(conn, Packet::Connect(Box::new(c)));
    assert!(h.recv(conn).is_empty());
    assert!(h.closed.contains(&conn));
    let m = h.broker.metrics();
    assert_eq!((m.connections, m.sessions), (0, 0));
    assert_eq!(h.broker.check_invariants(), Ok(()));

    // Later in a connection: a SUBACK too large for the client closes it, with nothing after.
    let conn = h.open();
    let mut c = connect_packet("small", V5);
    c.properties.maximum_packet_size = Some(40);
    h.send(conn, Packet::Connect(Box::new(c)));
    assert!(matches!(h.recv(conn).as_slice(), [Packet::ConnAck(_)]));
    let filters = (0..100)
        .map(|i| {
            (
                ByteString::from(format!("f/{i}")),
                SubscriptionOptions::default(),
            )
        })
        .collect();
    h.send(
        conn,
        Packet::Subscribe(Subscribe {
            packet_id: 1,
            properties: Properties::default(),
            filters,
        }),
    );
    assert!(h.recv(conn).is_empty());
    assert!(h.closed.contains(&conn));
    assert_eq!(h.broker.metrics().connections, 0);
    assert_eq!(h.broker.check_invariants(), Ok(()));
}
