"""MQTT over QUIC, implicit multi-stream mode (EMQX style), aioquic client.

After a successful CONNACK every further client bidirectional stream is a
data stream: a subscription made on it gets its SUBACK and its deliveries
there, their acknowledgements come back there, a PUBLISH on it is
acknowledged there, a PINGREQ is answered there. A data stream that breaks a
rule (CONNECT, malformed bytes) or ends (FIN) takes only itself and its own
subscriptions with it. Client unidirectional streams carry PUBLISH/SUBSCRIBE
answered on the control stream. Packets on any stream count for keep alive.
The server never opens a stream itself (checked after every check for every
connection). See quic_common.py for how the script is run.
"""

import asyncio

from quic_common import APP_ABNORMAL, check, m, main, unique


async def publisher(ctx, version=m.V5):
    return await ctx.quic_connected("publisher", version)


# -- data streams are read only after CONNACK --------------------------------------------

async def check_same_flight(ctx):
    """CONNECT on stream 0 and SUBSCRIBE on data stream 4 in the same flight:
    the SUBACK comes on stream 4, after the CONNACK, and the subscription works."""
    client = await ctx.quic("client")
    topic = unique("quic/early")
    client.client_id = unique("early")
    stream = client.new_stream()
    check(stream == 4, f"first data stream id {stream}")
    client.send_many([
        (0, m.connect(m.V5, client.client_id), False),
        (stream, m.subscribe(m.V5, 1, topic, 1), False),
    ])
    connack = await client.take(0, "CONNACK")
    check(connack.code == 0, f"connection refused: {connack}")
    suback = await client.take(stream, "SUBACK", packet_id=1)
    check(suback.codes == [1], f"SUBACK codes {suback.codes}, expected [1]")
    check(client.index(0, connack) < client.index(stream, suback),
          f"the SUBACK on the data stream arrived before the CONNACK: {client.log}")
    pub = await publisher(ctx)
    await pub.publish(0, topic, b"to the early stream", 1)
    await client.receive(stream, topic, b"to the early stream", qos=1)
    await client.quiet()


async def check_data_stream_before_connect(ctx):
    """A SUBSCRIBE on data stream 4 sent before the CONNECT itself waits:
    nothing is answered until CONNECT/CONNACK, then the SUBACK comes on 4."""
    client = await ctx.quic("client")
    topic = unique("quic/before-connect")
    stream = client.new_stream()
    # aioquic creates streams in order: stream 0 first (no bytes yet), then 4.
    client.send_many([(0, b"", False), (stream, m.subscribe(m.V5, 7, topic, 0), False)])
    await client.quiet(0.3, "answer to a data stream before CONNECT")
    client.alive("data stream opened before CONNECT")
    connack = await client.connect()
    suback = await client.take(stream, "SUBACK", packet_id=7)
    check(suback.codes == [0], f"SUBACK codes {suback.codes}, expected [0]")
    check(client.index(0, connack) < client.index(stream, suback), f"SUBACK before CONNACK: {client.log}")
    await client.quiet()


# -- subscriptions, publications and acknowledgements bound to a data stream ---------------

async def delivery_acked_on_stream(ctx, qos):
    # Receive Maximum 1: the second message can only come once the first
    # one's acknowledgement, sent on the data stream, has been accepted.
    client = await ctx.quic_connected("subscriber", props=[(m.RECEIVE_MAXIMUM, 1)])
    stream = client.new_stream()
    topic = unique(f"quic/data-qos{qos}")
    await client.subscribe(stream, topic, qos)
    pub = await publisher(ctx)
    await pub.publish(0, topic, b"first", qos)
    await pub.publish(0, topic, b"second", qos)
    first = await client.receive(stream, topic, b"first", qos=qos, ack=False)
    await client.quiet(0.3, "second delivery beyond Receive Maximum 1")
    if qos == 1:
        client.send(stream, m.puback(m.V5, first.packet_id))
    else:
        client.send(stream, m.pubrec(m.V5, first.packet_id))
        await client.take(stream, "PUBREL", f"PUBREL on data stream {stream}", packet_id=first.packet_id)
        await client.quiet(0.2, "second delivery before PUBCOMP")
        client.send(stream, m.pubcomp(m.V5, first.packet_id))
    await client.receive(stream, topic, b"second", qos=qos)
    await client.quiet()
    await client.disconnect()


async def check_delivery_qos1(ctx):
    """SUBSCRIBE QoS 1 on a data stream: SUBACK, deliveries there; the PUBACK
    sent on the data stream completes the flow."""
    await delivery_acked_on_stream(ctx, 1)


async def check_delivery_qos2(ctx):
    """Same with QoS 2: PUBLISH, PUBREC, PUBREL, PUBCOMP all on the data stream."""
    await delivery_acked_on_stream(ctx, 2)


async def check_publish_on_stream(ctx):
    """PUBLISH QoS 0/1/2 on a data stream: PUBACK, or PUBREC -> PUBREL ->
    PUBCOMP, on that stream; the messages are routed."""
    topic = unique("quic/data-publish")
    subscriber = await ctx.quic_connected("subscriber")
    await subscriber.subscribe(0, topic, 2)
    client = await ctx.quic_connected("publisher on a data stream")
    stream = client.new_stream()
    for qos in (0, 1, 2):
        await client.publish(stream, topic, f"qos {qos}".encode(), qos)
        await subscriber.receive(0, topic, f"qos {qos}".encode(), qos=qos)
    await asyncio.gather(client.quiet(), subscriber.quiet())
    await client.disconnect()


async def check_two_streams(ctx):
    """The same filter subscribed on two data streams: one publish is
    delivered once on each, nothing on the control stream."""
    topic = unique("quic/two-streams")
    client = await ctx.quic_connected("client")
    s1, s2 = client.new_stream(), client.new_stream()
    await client.subscribe(s1, topic, 1)
    await client.subscribe(s2, topic, 0)
    pub = await publisher(ctx)
    await pub.publish(0, topic, b"to both", 1)
    await client.receive(s1, topic, b"to both", qos=1)
    await client.receive(s2, topic, b"to both", qos=0)
    await client.quiet(what="extra delivery")
    await client.disconnect()


async def check_unsubscribe_wrong_stream(ctx):
    """UNSUBSCRIBE on a stream that does not own the filter: UNSUBACK 0x11
    there (data or control stream), the subscription stays; on its own stream
    it is removed (0x00)."""
    topic = unique("quic/unsubscribe")
    client = await ctx.quic_connected("client")
    owner, other = client.new_stream(), client.new_stream()
    await client.subscribe(owner, topic, 1)
    await client.unsubscribe(other, topic, code=0x11)
    await client.unsubscribe(0, topic, code=0x11)
    pub = await publisher(ctx)
    await pub.publish(0, topic, b"still subscribed", 1)
    await client.receive(owner, topic, b"still subscribed", qos=1)
    await client.unsubscribe(owner, topic, code=0x00)
    await pub.publish(0, topic, b"after unsubscribe", 1)
    await client.quiet(what="delivery after UNSUBSCRIBE")
    await client.disconnect()


async def check_ping_on_stream(ctx):
    """PINGREQ on a data stream: PINGRESP on that stream."""
    client = await ctx.quic_connected("client")
    stream = client.new_stream()
    await client.ping(stream)
    await client.quiet()
    await client.disconnect()


async def check_v311_data_streams(ctx):
    """The same rules for an MQTT 3.1.1 connection: SUBSCRIBE, deliveries,
    PUBLISH QoS 1 and 2, UNSUBSCRIBE, each answered on its data stream."""
    topic = unique("quic/v311-data")
    client = await ctx.quic_connected("3.1.1 client", m.V311)
    stream = client.new_stream()
    await client.subscribe(stream, topic, 2)
    await client.publish(stream, topic, b"own qos 1", 1)
    await client.receive(stream, topic, b"own qos 1", qos=1)
    await client.publish(stream, topic, b"own qos 2", 2)
    await client.receive(stream, topic, b"own qos 2", qos=2)
    await client.unsubscribe(stream, topic)
    await client.quiet()
    await client.disconnect()


# -- a data stream breaking the rules or ending -------------------------------------------

async def stream_violation(ctx, bad_bytes, what):
    """Sends `bad_bytes` on a fresh data stream of a client with a will and
    checks that only that stream ends."""
    will_topic = unique("quic/no-will")
    listener = ctx.paho("will listener over TCP")
    await listener.connect()
    await listener.subscribe(will_topic, 1)
    topic, control_topic = unique("quic/survivor"), unique("quic/after-bad")
    client = await ctx.quic_connected("client", will=(will_topic, b"must not be published", 1, False))
    keep = client.new_stream()
    await client.subscribe(keep, topic, 1)
    await client.subscribe(0, control_topic, 1)
    bad = client.new_stream()
    client.send(bad, bad_bytes)
    await client.until(lambda: bad in client.fins, f"server FIN on data stream {bad} after {what}")
    got = [p for s, p in client.log if s == bad]
    check(not got, f"the server sent {got} on the data stream that carried {what}")
    client.alive(f"after {what} on a data stream")
    await client.ping(0)
    pub = await publisher(ctx)
    await pub.publish(0, topic, b"other stream lives on", 1)
    await client.receive(keep, topic, b"other stream lives on", qos=1)
    # The ended stream is not read any more: a PUBLISH sent on it after the
    # FIN is neither acknowledged nor routed.
    if bad not in client.stop_sending:
        client.send(bad, m.publish(m.V5, control_topic, b"sent on an ended stream", 1, 99))
    await asyncio.gather(client.quiet(what=f"answer or delivery after the stream ended by {what}"),
                         listener.expect_no_message(f"will after {what} on a data stream"))
    client.alive(f"after {what} on a data stream")
    await client.disconnect()
    await listener.expect_no_message("will after a normal DISCONNECT")


async def check_connect_on_stream(ctx):
    """CONNECT on a data stream: the server finishes that stream (FIN) and
    stops reading it; other streams, PINGREQ on the control stream and the
    connection live on; no will is published."""
    await stream_violation(ctx, m.connect(m.V5, unique("second-connect")), "a CONNECT")


async def check_malformed_on_stream(ctx):
    """Malformed bytes (packet type 0) on a data stream: the same."""
    await stream_violation(ctx, b"\x00\x00", "packet type 0")


async def check_qos3_on_stream(ctx):
    """A PUBLISH with QoS 3 on a data stream: the same."""
    body = m.utf8("quic/qos3") + b"\x00\x01\x00" + b"payload"
    await stream_violation(ctx, m.packet(0x36, body), "a PUBLISH with QoS 3")


async def check_fin_ends_subscriptions(ctx):
    """After the client's FIN on a data stream its subscriptions are gone:
    a publish to its filter is delivered nowhere."""
    topic, marker = unique("quic/fin"), unique("quic/fin-marker")
    client = await ctx.quic_connected("client")
    stream = client.new_stream()
    await client.subscribe(stream, topic, 1)
    await client.subscribe(0, marker, 1)
    client.send(stream, fin=True)
    await asyncio.sleep(0.3)
    pub = await publisher(ctx)
    await pub.publish(0, topic, b"after FIN", 1)
    await pub.publish(0, marker, b"marker", 1)
    await client.receive(0, marker, b"marker", qos=1)
    await client.quiet(what="delivery to a finished data stream's subscription")
    client.alive("after FIN on a data stream")
    await client.ping(0)
    await client.disconnect()


async def check_fin_moves_inflight(ctx):
    """A QoS 1 delivery left unacknowledged on a data stream that then ends
    is not lost: it is sent again (DUP) on the control stream."""
    topic = unique("quic/fin-inflight")
    client = await ctx.quic_connected("client")
    stream = client.new_stream()
    await client.subscribe(stream, topic, 1)
    pub = await publisher(ctx)
    await pub.publish(0, topic, b"inflight", 1)
    first = await client.receive(stream, topic, b"inflight", qos=1, ack=False)
    client.send(stream, fin=True)
    again = await client.receive(0, topic, b"inflight", qos=1)
    check(again.dup and again.packet_id == first.packet_id,
          f"expected a retransmission (DUP, packet id {first.packet_id}), got {again}")
    await client.quiet()
    await client.disconnect()


# -- unidirectional streams ----------------------------------------------------------------

async def check_uni_publish(ctx):
    """PUBLISH QoS 1 on a client unidirectional stream: PUBACK on the control
    stream. QoS 2: PUBREC on the control stream, PUBREL/PUBCOMP there."""
    topic = unique("quic/uni-publish")
    subscriber = await ctx.quic_connected("subscriber")
    await subscriber.subscribe(0, topic, 2)
    client = await ctx.quic_connected("client")
    uni = client.new_stream(uni=True)
    await client.publish(uni, topic, b"uni qos 1", 1, ack_stream=0)
    await subscriber.receive(0, topic, b"uni qos 1", qos=1)
    await client.publish(uni, topic, b"uni qos 2", 2, ack_stream=0)
    await subscriber.receive(0, topic, b"uni qos 2", qos=2)
    await asyncio.gather(client.quiet(), subscriber.quiet())
    await client.disconnect()


async def check_uni_subscribe(ctx):
    """SUBSCRIBE on a unidirectional stream: SUBACK and deliveries on the
    control stream."""
    topic = unique("quic/uni-subscribe")
    client = await ctx.quic_connected("client")
    uni = client.new_stream(uni=True)
    await client.subscribe(uni, topic, 1, ack_stream=0)
    pub = await publisher(ctx)
    await pub.publish(0, topic, b"via uni subscription", 1)
    await client.receive(0, topic, b"via uni subscription", qos=1)
    await client.quiet()
    await client.disconnect()


# -- keep alive ------------------------------------------------------------------------------

async def check_keep_alive_data_stream(ctx):
    """Keep alive 1 s, then only PINGREQs on a data stream for ~3 s: they
    count, the connection stays up."""
    client = await ctx.quic_connected("client", keepalive=1)
    stream = client.new_stream()
    loop = asyncio.get_running_loop()
    end = loop.time() + 3.0
    while loop.time() < end:
        await client.ping(stream)
        await asyncio.sleep(0.4)
    client.alive("PINGREQs on a data stream every 0.4 s with keep alive 1 s")
    await client.ping(0)
    await client.quiet(0.1)
    await client.disconnect()


async def check_keep_alive_expiry(ctx):
    """The counterpart: keep alive 1 s and silence -> DISCONNECT 0x8D, then
    application error 1, within 1.5 s (plus slack)."""
    client = await ctx.quic_connected("client", keepalive=1)
    await client.closed(APP_ABNORMAL, "keep alive expiry", timeout=3.5)
    d = await client.take(0, "DISCONNECT")
    check(d.code == 0x8D, f"DISCONNECT reason 0x{d.code:02x}, expected 0x8D (keep alive timeout): {d}")


CHECKS = [
    ("data-stream-same-flight-as-connect", check_same_flight),
    ("data-stream-before-connect-waits", check_data_stream_before_connect),
    ("delivery-qos1-acked-on-data-stream", check_delivery_qos1),
    ("delivery-qos2-acked-on-data-stream", check_delivery_qos2),
    ("publish-acked-on-data-stream", check_publish_on_stream),
    ("same-filter-on-two-streams", check_two_streams),
    ("unsubscribe-other-stream-0x11", check_unsubscribe_wrong_stream),
    ("pingreq-on-data-stream", check_ping_on_stream),
    ("v311-data-streams", check_v311_data_streams),
    ("connect-on-data-stream-ends-it-only", check_connect_on_stream),
    ("malformed-on-data-stream-ends-it-only", check_malformed_on_stream),
    ("qos3-publish-on-data-stream-ends-it-only", check_qos3_on_stream),
    ("data-stream-fin-ends-its-subscriptions", check_fin_ends_subscriptions),
    ("data-stream-fin-moves-inflight-to-control", check_fin_moves_inflight),
    ("uni-stream-publish-acked-on-control", check_uni_publish),
    ("uni-stream-subscribe-answered-on-control", check_uni_subscribe),
    ("keep-alive-counts-data-stream-packets", check_keep_alive_data_stream),
    ("keep-alive-expiry-closes-with-1", check_keep_alive_expiry),
]

if __name__ == "__main__":
    main(CHECKS, __doc__)
