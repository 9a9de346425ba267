"""paho-mqtt across two nodes of an mqttd cluster (tests/cluster_delivery.rs):

    python paho_cluster.py --port-a A --port-b B

A subscriber on node B, a publisher on node A, MQTT 5.0 and 3.1.1: QoS 0/1/2 messages
arrive at their QoS, in the order published, once each; 5.0 properties (content type, user
properties) cross the nodes. Exits 0 on success, 1 with "FAIL: ..." otherwise.
"""

import argparse
import signal
import sys
import time

from paho_common import V5, V311, Client, Fail, PacketTypes, check, props, unique

N = 5


def scenario(port_a, port_b, protocol):
    topic = unique("paho/cluster")
    subscriber = Client("127.0.0.1", port_b, protocol, name="subscriber-on-b")
    subscriber.connect()
    check(subscriber.subscribe(topic + "/#", qos=2) == 2, "QoS 2 subscription not granted QoS 2")
    publisher = Client("127.0.0.1", port_a, protocol, name="publisher-on-a")
    publisher.connect()
    for qos in (0, 1, 2):
        for i in range(N):
            properties = None
            if protocol == V5:
                properties = props(PacketTypes.PUBLISH, ContentType="text/plain",
                                   UserProperty=[("seq", str(i))])
            publisher.publish(f"{topic}/q{qos}", f"{qos}-{i}".encode(), qos=qos,
                              properties=properties)
        for i in range(N):
            m = subscriber.expect_message(f"QoS {qos} message {i} from the other node")
            check((m.topic, m.payload, m.qos) == (f"{topic}/q{qos}", f"{qos}-{i}".encode(), qos),
                  f"QoS {qos} message {i}: got {m}")
            if protocol == V5:
                check(getattr(m.properties, "ContentType", None) == "text/plain",
                      f"content type lost across nodes: {m}")
                check(("seq", str(i)) in getattr(m.properties, "UserProperty", []),
                      f"user property lost across nodes: {m}")
    subscriber.expect_no_message("duplicate")
    subscriber.disconnect()
    publisher.disconnect()


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port-a", type=int, required=True)
    parser.add_argument("--port-b", type=int, required=True)
    args = parser.parse_args()
    signal.alarm(30)
    started = time.monotonic()
    try:
        for protocol in (V5, V311):
            scenario(args.port_a, args.port_b, protocol)
    except Fail as failure:
        sys.stderr.write(f"FAIL: {failure}\n")
        sys.exit(1)
    print(f"PASS ({time.monotonic() - started:.2f}s)")


if __name__ == "__main__":
    main()
