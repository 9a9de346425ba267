"""MQTT over QUIC, single-stream mode, with aioquic as the client QUIC stack.

The control stream (client bidirectional stream 0) carries MQTT exactly as
TCP does. Checks: the handshake (QUIC v1, TLS 1.3, ALPN mqtt / mqttv5, a
wrong ALPN refused), how the server closes the QUIC connection (application
error 0 after DISCONNECT, 1 on a protocol error or a lost control stream,
5.0 DISCONNECT first), and the basic MQTT behaviour for 3.1.1 and 5.0:
QoS 0/1/2 round trips, retained messages, the will on an abrupt close and
persistent session resume. See quic_common.py for how the script is run.
"""

from quic_common import APP_ABNORMAL, NO_APPLICATION_PROTOCOL, check, m, main, unique


# -- handshake and connection close ------------------------------------------------------

async def alpn_accepted(ctx, alpn, version):
    client = await ctx.quic(f"client alpn {alpn}", version, alpn=(alpn,))
    check(client.alpn == alpn, f"negotiated ALPN {client.alpn!r}, expected {alpn!r}")
    await client.connect()
    await client.ping(0)
    await client.disconnect()


async def check_alpn_mqtt(ctx):
    """ALPN `mqtt`: handshake, CONNECT/CONNACK, PINGREQ, DISCONNECT -> close 0."""
    await alpn_accepted(ctx, "mqtt", m.V5)
    await alpn_accepted(ctx, "mqtt", m.V311)


async def check_alpn_mqttv5(ctx):
    """ALPN `mqttv5` is accepted too."""
    await alpn_accepted(ctx, "mqttv5", m.V5)


async def check_wrong_alpn(ctx):
    """An ALPN the server does not offer fails the handshake with TLS alert
    no_application_protocol (QUIC error 0x178, RFC 9001 8.1)."""
    client = await ctx.quic("client alpn h3", alpn=("h3",), handshake=False)
    check(not client.connected, f"handshake with ALPN h3 succeeded (negotiated {client.alpn!r})")
    await client.until(lambda: client.terminated is not None, "connection close after the refused handshake")
    t = client.terminated
    check(t.frame_type is not None and t.error_code == NO_APPLICATION_PROTOCOL,
          f"expected a transport close with error 0x{NO_APPLICATION_PROTOCOL:x} (no_application_protocol), "
          f"got {client.describe_end()}")


async def check_disconnect_closes_normally(ctx):
    """After DISCONNECT the server closes with application error 0 (3.1.1 and
    5.0), and a 5.0 DISCONNECT with 0x04 (disconnect with will) is also a
    normal close."""
    for version in (m.V311, m.V5):
        client = await ctx.quic_connected(f"v{version} client", version)
        await client.disconnect()
    listener = await ctx.quic_connected("will listener")
    will_topic = unique("quic/will-04")
    await listener.subscribe(0, will_topic, 1)
    client = await ctx.quic_connected("client", will=(will_topic, b"will 04", 1, False))
    client.send(0, m.disconnect(m.V5, 0x04))
    await client.closed(0, "after DISCONNECT 0x04")
    await listener.receive(0, will_topic, b"will 04", qos=1)


async def protocol_error(ctx, version):
    client = await ctx.quic_connected(f"v{version} client", version)
    await client.ping(0)
    body = m.utf8("quic/qos3") + b"\x00\x01" + (b"\x00" if version == m.V5 else b"") + b"payload"
    client.send(0, m.packet(0x36, body))  # PUBLISH with QoS 3: malformed
    await client.closed(APP_ABNORMAL, "after a PUBLISH with QoS 3")
    if version == m.V5:
        d = await client.take(0, "DISCONNECT", "DISCONNECT before the close")
        check(d.code == 0x81, f"DISCONNECT reason 0x{d.code:02x}, expected 0x81 (malformed packet): {d}")
    client.taken_nothing_else("packet on a protocol error")


async def check_v5_protocol_error(ctx):
    """5.0: a PUBLISH with QoS 3 on the control stream -> DISCONNECT 0x81 on
    the control stream, then application error 1."""
    await protocol_error(ctx, m.V5)


async def check_v311_protocol_error(ctx):
    """3.1.1: a PUBLISH with QoS 3 -> application error 1, no packet."""
    await protocol_error(ctx, m.V311)


async def check_connect_first(ctx):
    """CONNECT must be the first packet of the control stream: a PINGREQ
    first gets no PINGRESP and the connection is closed with error 1."""
    client = await ctx.quic("client")
    client.send(0, m.pingreq())
    await client.closed(APP_ABNORMAL, "after PINGREQ before CONNECT")
    got = [p for _, p in client.log]
    check(all(p.kind not in ("PINGRESP", "CONNACK") for p in got),
          f"the server answered a PINGREQ sent before CONNECT: {got}")


async def lost_control_stream(ctx, end):
    listener = await ctx.quic_connected("will listener")
    will_topic = unique("quic/will-lost")
    await listener.subscribe(0, will_topic, 1)
    client = await ctx.quic_connected("client", will=(will_topic, b"control stream lost", 1, False))
    await client.ping(0)
    end(client)
    await client.closed(APP_ABNORMAL, "after the control stream ended without DISCONNECT")
    await listener.receive(0, will_topic, b"control stream lost", qos=1)


async def check_control_fin(ctx):
    """FIN on the control stream without DISCONNECT: application error 1, and
    the will is published."""
    await lost_control_stream(ctx, lambda client: client.send(0, fin=True))


async def check_control_reset(ctx):
    """RESET_STREAM on the control stream: application error 1, will published."""
    await lost_control_stream(ctx, lambda client: client.reset(0, 0))


# -- MQTT over the control stream, 3.1.1 and 5.0 -----------------------------------------

async def qos_round_trips(ctx, version):
    topic, low_topic = unique("quic/qos"), unique("quic/qos-low")
    subscriber = await ctx.quic_connected("subscriber", version)
    await subscriber.subscribe(0, topic, 2)
    await subscriber.subscribe(0, low_topic, 0)
    publisher = await ctx.quic_connected("publisher", version)
    for qos in (0, 1, 2):
        payload = f"qos {qos} ".encode() + bytes([0, 255, 10])
        await publisher.publish(0, topic, payload, qos)
        await subscriber.receive(0, topic, payload, qos=qos, retain=False)
    await publisher.publish(0, low_topic, b"downgraded", 2)
    await subscriber.receive(0, low_topic, b"downgraded", qos=0)
    await subscriber.quiet()
    await publisher.quiet()
    await subscriber.disconnect()
    await publisher.disconnect()


async def retained(ctx, version):
    topic = unique("quic/retained")
    publisher = await ctx.quic_connected("publisher", version)
    await publisher.publish(0, topic, b"first value", 1, retain=True)
    await publisher.publish(0, topic, b"latest value", 1, retain=True)
    late = await ctx.quic_connected("late subscriber", version)
    await late.subscribe(0, topic, 1)
    await late.receive(0, topic, b"latest value", qos=1, retain=True)
    await publisher.publish(0, topic, b"live", 1)
    await late.receive(0, topic, b"live", qos=1, retain=False)
    await late.quiet(what="second retained message")
    await publisher.publish(0, topic, b"", 1, retain=True)
    await late.receive(0, topic, b"", qos=1)
    after = await ctx.quic_connected("subscriber after clear", version)
    await after.subscribe(0, topic, 1)
    await after.quiet(what="retained message after it was cleared")
    for client in (publisher, late, after):
        await client.disconnect()


async def will(ctx, version):
    will_topic = unique("quic/will")
    listener = await ctx.quic_connected("listener", version)
    await listener.subscribe(0, will_topic, 1)
    doomed = await ctx.quic_connected("doomed", version, will=(will_topic, b"doomed vanished", 1, False))
    await doomed.ping(0)
    doomed.close(APP_ABNORMAL, "crash")  # CONNECTION_CLOSE with an application error, no DISCONNECT
    await listener.receive(0, will_topic, b"doomed vanished", qos=1, retain=False)
    polite = await ctx.quic_connected("polite", version, will=(will_topic, b"polite will", 1, False))
    await polite.disconnect()
    await listener.quiet(what="will after a normal DISCONNECT")
    await listener.disconnect()


async def persistent_session(ctx, version):
    client_id = unique("quic-persistent")
    topic_q2, topic_q1 = unique("quic/persistent-q2"), unique("quic/persistent-q1")
    props = [(m.SESSION_EXPIRY, 300)] if version == m.V5 else None
    first = await ctx.quic("first connection", version)
    ack = await first.connect(client_id, clean=version == m.V5, props=props)
    check(not ack.session_present, f"a brand new session reported as present: {ack}")
    await first.subscribe(0, topic_q2, 2)
    await first.subscribe(0, topic_q1, 1)
    await first.disconnect()

    publisher = await ctx.quic_connected("publisher", version)
    await publisher.publish(0, topic_q2, b"queued qos 2", 2)
    await publisher.publish(0, topic_q1, b"queued qos 1", 1)

    resumed = await ctx.quic("resumed connection", version)
    ack = await resumed.connect(client_id, clean=False, props=props)
    check(ack.session_present, f"the resumed session must be reported as present: {ack}")
    await resumed.receive(0, topic_q2, b"queued qos 2", qos=2)
    await resumed.receive(0, topic_q1, b"queued qos 1", qos=1)
    await resumed.quiet(what="duplicate of a queued message")
    await publisher.publish(0, topic_q1, b"live after resume", 1)
    await resumed.receive(0, topic_q1, b"live after resume", qos=1)
    await resumed.disconnect()
    await publisher.disconnect()


def both_versions(name, function):
    async def v311(ctx):
        await function(ctx, m.V311)

    async def v5(ctx):
        await function(ctx, m.V5)
    return [(f"v311-{name}", v311), (f"v5-{name}", v5)]


CHECKS = [
    ("alpn-mqtt", check_alpn_mqtt),
    ("alpn-mqttv5", check_alpn_mqttv5),
    ("wrong-alpn-refused", check_wrong_alpn),
    ("disconnect-closes-with-0", check_disconnect_closes_normally),
    ("v5-protocol-error-disconnect-0x81-then-close-1", check_v5_protocol_error),
    ("v311-protocol-error-close-1", check_v311_protocol_error),
    ("connect-must-be-first", check_connect_first),
    ("control-stream-fin-closes-with-1", check_control_fin),
    ("control-stream-reset-closes-with-1", check_control_reset),
    *both_versions("qos-round-trips", qos_round_trips),
    *both_versions("retained", retained),
    *both_versions("will-on-abrupt-close", will),
    *both_versions("persistent-session", persistent_session),
]

if __name__ == "__main__":
    main(CHECKS, __doc__)
