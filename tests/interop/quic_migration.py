"""Connection migration with aioquic as the client QUIC stack
(proto-ext/migration.md).

The client moves its QUIC connection to a new UDP socket mid-session (a new
local port, as after a NAT rebinding or a switch of network) and, as RFC 9000
9.5 asks, to a new connection ID. The MQTT session must carry on over the new
path: subscriptions, QoS 1/2 flows started before the move and finished after
it, keep alive, with nothing lost or delivered twice. The broker must issue
connection IDs in its documented layout (the Rust side starts it with
`--server-id 0a01`). For each move the script prints
`moved <client id> <new port>`, and the Rust test checks that the broker
logged `client migrated` with that address.

See quic_common.py for how the script is run.
"""

import asyncio
import socket

from quic_common import check, m, main, unique

SERVER_ID = bytes.fromhex("0a01")
# QUIC-LB plaintext layout: config rotation 0, length 1 + 2 + 8 - 1 = 10.
FIRST_OCTET = 0x0A
CID_LEN = 11


class _Forward(asyncio.DatagramProtocol):
    """Hands datagrams from the new socket to the client's protocol."""

    def __init__(self, proto):
        self.proto = proto

    def datagram_received(self, data, addr):
        self.proto.datagram_received(data, addr)


async def move(client):
    """Rebinds `client` to a new UDP socket and a new connection ID; returns
    the new local port."""
    loop = asyncio.get_running_loop()
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    transport, _ = await loop.create_datagram_endpoint(lambda: _Forward(client.proto), sock=sock)
    old = client.transport
    client.proto._transport = transport
    client.transport = transport
    old.close()
    client.proto._quic.change_connection_id()
    client.proto.transmit()
    port = sock.getsockname()[1]
    print(f"moved {client.client_id} {port}", flush=True)
    return port


def check_cids(client):
    """Every connection ID the server issued has the documented layout."""
    quic = client.proto._quic
    cids = [quic._peer_cid.cid] + [c.cid for c in quic._peer_cid_available]
    check(len(cids) >= 2, f"the server issued only {len(cids)} connection IDs")
    for cid in cids:
        check(len(cid) == CID_LEN and cid[0] == FIRST_OCTET and cid[1:3] == SERVER_ID,
              f"connection ID {cid.hex()} does not carry server id {SERVER_ID.hex()} "
              f"(expected {CID_LEN} bytes starting {FIRST_OCTET:02x}{SERVER_ID.hex()})")


async def check_subscriber_moves(ctx):
    """A subscriber moves with a QoS 1 and a QoS 2 delivery unacknowledged:
    it acknowledges them from the new address, then QoS 0/1/2 deliveries go
    on; nothing is lost or repeated."""
    topic = unique("mig/sub")
    sub = await ctx.quic_connected("mover", keepalive=2)
    check_cids(sub)
    await sub.subscribe(0, topic + "/#", 2)
    pub = await ctx.tcp("publisher")
    await pub.connect()
    for qos in (0, 1, 2):
        await pub.publish(0, f"{topic}/before", f"before {qos}".encode(), qos)
        await sub.receive(0, f"{topic}/before", f"before {qos}".encode(), qos=qos)
    # Deliveries in flight across the move.
    await pub.publish(0, f"{topic}/across", b"across 1", 1)
    await pub.publish(0, f"{topic}/across2", b"across 2", 2)
    q1 = await sub.take(0, "PUBLISH", "QoS 1 delivery", topic=f"{topic}/across")
    q2 = await sub.take(0, "PUBLISH", "QoS 2 delivery", topic=f"{topic}/across2")
    await move(sub)
    sub.send(0, m.puback(sub.version, q1.packet_id))
    sub.send(0, m.pubrec(sub.version, q2.packet_id))
    await sub.take(0, "PUBREL", "PUBREL over the new path", packet_id=q2.packet_id)
    sub.send(0, m.pubcomp(sub.version, q2.packet_id))
    for qos in (0, 1, 2):
        await pub.publish(0, f"{topic}/after", f"after {qos}".encode(), qos)
        await sub.receive(0, f"{topic}/after", f"after {qos}".encode(), qos=qos)
    # Keep alive 2 s: the session outlives 1.5 x keep alive only if the new
    # path carries the pings.
    for _ in range(3):
        await asyncio.sleep(1.0)
        await sub.ping(0)
    sub.alive("after the move")
    await sub.quiet(what="duplicate after the move")
    await sub.disconnect()


async def check_publisher_moves_twice(ctx):
    """A publisher moves twice, each time with a QoS 2 flow half done; every
    message reaches the subscriber exactly once."""
    topic = unique("mig/pub")
    watcher = await ctx.tcp("watcher")
    await watcher.connect()
    await watcher.subscribe(0, topic + "/#", 2)
    mover = await ctx.quic_connected("moving publisher")
    for round_ in range(2):
        packet_id = mover.next_id()
        mover.send(0, m.publish(mover.version, f"{topic}/{round_}", f"qos2 {round_}".encode(), 2, packet_id))
        await mover.take(0, "PUBREC", "PUBREC", packet_id=packet_id)
        await move(mover)
        mover.send(0, m.pubrel(mover.version, packet_id))
        await mover.take(0, "PUBCOMP", "PUBCOMP over the new path", packet_id=packet_id)
        await watcher.receive(0, f"{topic}/{round_}", f"qos2 {round_}".encode(), qos=2)
        await mover.publish(0, f"{topic}/q1", f"qos1 {round_}".encode(), 1)
        await watcher.receive(0, f"{topic}/q1", f"qos1 {round_}".encode(), qos=1)
        # The broker polls peer addresses every 0.5 s; moves further apart
        # than that are each reported.
        await asyncio.sleep(0.8)
    await watcher.quiet(what="duplicate delivery")
    await mover.disconnect()


CHECKS = [
    ("subscriber-moves-mid-flow", check_subscriber_moves),
    ("publisher-moves-twice", check_publisher_moves_twice),
]

if __name__ == "__main__":
    main(CHECKS, __doc__)
