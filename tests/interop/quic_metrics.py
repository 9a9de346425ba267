"""What an aioquic client does, for tests/admin_metrics.rs to see in /metrics and in the
client's QUIC block of the REST API.

One QUIC connection (aioquic, datagrams advertised) connects as client id `--client-id`
(environment MQTTD_CLIENT_ID), then:
- opens 2 bidirectional data streams (a SUBSCRIBE on each) and 1 unidirectional stream (a
  QoS 0 PUBLISH, stream left open), so 4 client streams are open: control 1, bidi 2, uni 1;
- publishes 3 QoS 1 messages on the control stream (PUBACKed), 1 QoS 0 on the uni stream and
  4 QoS 0 in DATAGRAM frames, all to topics nobody subscribes to except the first bidi stream
  (it receives the datagram messages back: 4 deliveries);
- moves once to a new UDP socket and connection ID (a migration);
- prints `ready <client id>` and waits until the file named by MQTTD_CONTINUE_FILE exists;
- then DISCONNECTs.

See quic_common.py for how the script is run.
"""

import asyncio
import os

from quic_common import WAIT, check, m, main
from quic_migration import move

BIDI_STREAMS = 2
QOS1_PUBLISHES = 3
DATAGRAMS = 4


async def check_acts_then_waits(ctx):
    client_id = os.environ["MQTTD_CLIENT_ID"]
    go = os.environ["MQTTD_CONTINUE_FILE"]
    client = await ctx.quic("metrics", datagrams=True)
    await client.connect(client_id=client_id)
    streams = [client.new_stream() for _ in range(BIDI_STREAMS)]
    await client.subscribe(streams[0], "metrics/dg/#", 0)
    await client.subscribe(streams[1], "metrics/other/#", 0)
    for n in range(QOS1_PUBLISHES):
        await client.publish(0, "metrics/q1", f"q1 {n}".encode(), 1)
    uni = client.new_stream(uni=True)
    client.send(uni, m.publish(client.version, "metrics/uni", b"uni", 0))
    # Datagrams are processed only after CONNACK (done) and may be lost: on loopback they
    # are not; each comes back on the subscribing stream.
    for n in range(DATAGRAMS):
        client.send_datagram(m.publish(client.version, f"metrics/dg/{n}", f"dg {n}".encode(), 0))
    for n in range(DATAGRAMS):
        await client.receive(streams[0], f"metrics/dg/{n}", f"dg {n}".encode(), qos=0)
    await move(client)
    await client.ping(0)
    print(f"ready {client_id}", flush=True)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + 15
    while not os.path.exists(go):
        check(loop.time() < deadline, "the test never said to go on")
        await client.ping(0)
        await asyncio.sleep(0.2)
    client.alive("before DISCONNECT")
    await client.disconnect()


CHECKS = [("acts-then-waits", check_acts_then_waits)]

if __name__ == "__main__":
    main(CHECKS, __doc__)
