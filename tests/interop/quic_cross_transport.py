"""MQTT across transports: QUIC (aioquic) and TCP (paho-mqtt, or raw bytes)
clients of the same broker share topics, wills and sessions.

Checks: messages published over TCP reach QUIC subscribers (control stream
and data stream) and the other way round, at every QoS and across protocol
versions; a will of a QUIC client reaches a TCP subscriber; session takeover
in both directions (5.0: the old connection gets DISCONNECT 0x8E; with clean
start 0 the new one gets session_present=1 and the session's unacknowledged
and queued QoS 1 messages). See quic_common.py for how the script is run.
"""

from quic_common import APP_ABNORMAL, check, m, main, unique


async def check_tcp_to_quic(ctx):
    """paho (3.1.1, TCP) publishes QoS 0/1/2; a QUIC 5.0 subscriber on the
    control stream receives each at its QoS."""
    topic = unique("cross/tcp-to-quic")
    subscriber = await ctx.quic_connected("QUIC subscriber")
    await subscriber.subscribe(0, topic, 2)
    publisher = ctx.paho("paho publisher", m.V311)
    await publisher.connect()
    for qos in (0, 1, 2):
        payload = f"tcp qos {qos}".encode()
        await publisher.publish(topic, payload, qos)
        await subscriber.receive(0, topic, payload, qos=qos, retain=False)
    await subscriber.quiet()
    await subscriber.disconnect()
    await publisher.disconnect()


async def check_quic_to_tcp(ctx):
    """A QUIC 3.1.1 client publishes QoS 0/1/2; a paho 5.0 TCP subscriber
    receives each at its QoS."""
    topic = unique("cross/quic-to-tcp")
    subscriber = ctx.paho("paho subscriber", m.V5)
    await subscriber.connect()
    await subscriber.subscribe(topic, 2)
    publisher = await ctx.quic_connected("QUIC publisher", m.V311)
    for qos in (0, 1, 2):
        payload = f"quic qos {qos}".encode()
        await publisher.publish(0, topic, payload, qos)
        message = await subscriber.expect_message(f"the QoS {qos} message")
        check((message.topic, message.payload, message.qos, message.retain) == (topic, payload, qos, False),
              f"QoS {qos}: got {message}")
    await subscriber.expect_no_message()
    await publisher.disconnect()
    await subscriber.disconnect()


async def check_tcp_to_quic_data_stream(ctx):
    """paho publishes; a QUIC subscriber on a data stream receives there (QoS 1
    and 2, acknowledged there), and a QUIC publish from a data stream reaches
    paho."""
    topic = unique("cross/data-stream")
    subscriber = await ctx.quic_connected("QUIC data-stream subscriber")
    stream = subscriber.new_stream()
    await subscriber.subscribe(stream, topic, 2)
    paho = ctx.paho("paho client", m.V5)
    await paho.connect()
    await paho.subscribe(topic, 1)
    for qos in (1, 2):
        await paho.publish(topic, f"from tcp {qos}".encode(), qos)
        await subscriber.receive(stream, topic, f"from tcp {qos}".encode(), qos=qos)
        message = await paho.expect_message("paho's own message")
        check(message.payload == f"from tcp {qos}".encode(), f"paho got {message}")
    await subscriber.publish(stream, topic, b"from a data stream", 1)
    await subscriber.receive(stream, topic, b"from a data stream", qos=1)
    message = await paho.expect_message("the message published on a QUIC data stream")
    check((message.payload, message.qos) == (b"from a data stream", 1), f"paho got {message}")
    await subscriber.quiet()
    await subscriber.disconnect()
    await paho.disconnect()


async def check_will_quic_to_tcp(ctx):
    """A QUIC client closed with an application error (no DISCONNECT): its
    will reaches a paho TCP subscriber."""
    will_topic = unique("cross/will")
    listener = ctx.paho("paho listener", m.V311)
    await listener.connect()
    await listener.subscribe(will_topic, 1)
    doomed = await ctx.quic_connected("QUIC client", will=(will_topic, b"quic client gone", 1, False))
    await doomed.ping(0)
    doomed.close(APP_ABNORMAL, "crash")
    message = await listener.expect_message("the will of the QUIC client")
    check((message.topic, message.payload, message.qos) == (will_topic, b"quic client gone", 1),
          f"wrong will: {message}")
    await listener.disconnect()


async def takeover_tcp_by_quic(ctx, version):
    client_id = unique("cross-takeover")
    topic = unique("cross/takeover")
    props = [(m.SESSION_EXPIRY, 300)] if version == m.V5 else None
    tcp = await ctx.tcp("TCP client", version)
    # 5.0: Receive Maximum 1, so that with one message unacknowledged the
    # next one waits in the session queue.
    tcp_props = props + [(m.RECEIVE_MAXIMUM, 1)] if version == m.V5 else None
    await tcp.connect(client_id, clean=version == m.V5, props=tcp_props)
    await tcp.subscribe(0, topic, 1)
    publisher = await ctx.quic_connected("publisher")
    await publisher.publish(0, topic, b"unacknowledged", 1)
    first = await tcp.receive(0, topic, b"unacknowledged", qos=1, ack=False)
    if version == m.V5:
        await publisher.publish(0, topic, b"queued", 1)
        await tcp.quiet(0.3, "delivery beyond Receive Maximum 1")

    quic = await ctx.quic("QUIC client", version)
    ack = await quic.connect(client_id, clean=False, props=props)
    check(ack.session_present, f"session_present must be 1 after a takeover with clean start 0: {ack}")
    await tcp.closed("after the QUIC takeover")
    if version == m.V5:
        d = await tcp.take(0, "DISCONNECT", "DISCONNECT on the taken-over TCP connection")
        check(d.code == 0x8E, f"DISCONNECT reason 0x{d.code:02x}, expected 0x8E (session taken over): {d}")
    tcp.taken_nothing_else("packet on the taken-over TCP connection")

    again = await quic.receive(0, topic, b"unacknowledged", qos=1)
    check(again.dup and again.packet_id == first.packet_id,
          f"the unacknowledged message must be resent with DUP and packet id {first.packet_id}: {again}")
    if version == m.V5:
        await quic.receive(0, topic, b"queued", qos=1)
    await publisher.publish(0, topic, b"live", 1)
    await quic.receive(0, topic, b"live", qos=1)
    await quic.quiet()
    await quic.disconnect()
    await publisher.disconnect()


async def check_v5_takeover_tcp_by_quic(ctx):
    """5.0: a QUIC connection with the client id of a live TCP session (clean
    start 0): TCP gets DISCONNECT 0x8E and is closed, QUIC gets
    session_present=1, the unacknowledged message again (DUP) and the queued one."""
    await takeover_tcp_by_quic(ctx, m.V5)


async def check_v311_takeover_tcp_by_quic(ctx):
    """3.1.1: the TCP connection is closed; QUIC (clean session 0) gets
    session_present=1 and the unacknowledged message again (DUP)."""
    await takeover_tcp_by_quic(ctx, m.V311)


async def check_v5_takeover_quic_by_tcp(ctx):
    """5.0: a TCP connection takes over a QUIC session: the QUIC client gets
    DISCONNECT 0x8E on the control stream, then application error 1; the
    TCP client gets session_present=1 and the QUIC subscriptions (one made on
    a data stream) now deliver to it."""
    client_id = unique("cross-takeover-back")
    topic_control, topic_data = unique("cross/back-control"), unique("cross/back-data")
    props = [(m.SESSION_EXPIRY, 300)]
    quic = await ctx.quic("QUIC client")
    await quic.connect(client_id, props=props)
    await quic.subscribe(0, topic_control, 1)
    stream = quic.new_stream()
    await quic.subscribe(stream, topic_data, 1)

    tcp = await ctx.tcp("TCP client")
    ack = await tcp.connect(client_id, clean=False, props=props)
    check(ack.session_present, f"session_present must be 1: {ack}")
    await quic.closed(APP_ABNORMAL, "after the TCP takeover")
    d = await quic.take(0, "DISCONNECT", "DISCONNECT on the control stream of the taken-over QUIC connection")
    check(d.code == 0x8E, f"DISCONNECT reason 0x{d.code:02x}, expected 0x8E (session taken over): {d}")
    quic.taken_nothing_else("packet on the taken-over QUIC connection")

    publisher = await ctx.quic_connected("publisher")
    await publisher.publish(0, topic_control, b"to the control-stream subscription", 1)
    await tcp.receive(0, topic_control, b"to the control-stream subscription", qos=1)
    await publisher.publish(0, topic_data, b"to the data-stream subscription", 1)
    await tcp.receive(0, topic_data, b"to the data-stream subscription", qos=1)
    await tcp.quiet()
    tcp.send(0, m.disconnect(m.V5))
    await tcp.closed("after DISCONNECT")
    await publisher.disconnect()


CHECKS = [
    ("tcp-publish-reaches-quic", check_tcp_to_quic),
    ("quic-publish-reaches-tcp", check_quic_to_tcp),
    ("tcp-and-quic-data-stream", check_tcp_to_quic_data_stream),
    ("quic-will-reaches-tcp", check_will_quic_to_tcp),
    ("v5-takeover-tcp-by-quic", check_v5_takeover_tcp_by_quic),
    ("v311-takeover-tcp-by-quic", check_v311_takeover_tcp_by_quic),
    ("v5-takeover-quic-by-tcp", check_v5_takeover_quic_by_tcp),
]

if __name__ == "__main__":
    main(CHECKS, __doc__)
