"""Shared helpers for the paho-mqtt (2.x) interop scripts.

Each script is run by tests/interop_paho.rs as

    python paho_v311.py --host 127.0.0.1 --port PORT SCENARIO

and exits 0 when the scenario passes, 1 with a "FAIL: ..." line on stderr
when the broker misbehaves, 2 on an unexpected error. Every wait has a
timeout and a watchdog ends the script if anything hangs.
"""

import argparse
import os
import queue
import signal
import sys
import threading
import time
import traceback
import uuid

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

# Longest wait for any single expected event (CONNACK, SUBACK, a message).
WAIT = 5.0
# How long "nothing arrives" is observed for.
QUIET = 0.7
# The whole scenario must finish within this many seconds.
WATCHDOG_SECONDS = 18

V311 = mqtt.MQTTv311
V5 = mqtt.MQTTv5

# How every Client connects, set from the command line by main(): plain TCP (the default),
# or MQTT over WebSocket at PATH ("websockets"), with TLS trusting CA when given.
TRANSPORT = {"transport": "tcp", "path": "/mqtt", "ca": None}


class Fail(Exception):
    """The broker did something the scenario does not accept."""


def check(condition, message):
    if not condition:
        raise Fail(message)


def unique(name):
    """A topic or client id fragment unique to this run."""
    return f"{name}-{uuid.uuid4().hex[:10]}"


def props(packet_type, **values):
    """Properties for `packet_type` (PacketTypes.PUBLISH, ...) from keyword
    arguments named as paho names them (UserProperty, MessageExpiryInterval, ...)."""
    p = Properties(packet_type)
    for key, value in values.items():
        setattr(p, key, value)
    return p


def prop(properties, name, default=None):
    """A property of a received packet, or `default` if absent."""
    if properties is None:
        return default
    return getattr(properties, name, default)


class Received:
    """A copy of a received PUBLISH."""

    def __init__(self, message):
        self.topic = message.topic
        self.payload = bytes(message.payload)
        self.qos = message.qos
        self.retain = bool(message.retain)
        self.properties = getattr(message, "properties", None)

    def __repr__(self):
        return (f"Received(topic={self.topic!r}, payload={self.payload!r}, qos={self.qos}, "
                f"retain={self.retain}, properties={self.properties})")


class Client:
    """A paho client running its network loop in a thread, with blocking,
    time-limited helpers."""

    def __init__(self, host, port, protocol, client_id=None, name="client"):
        self.host = host
        self.port = port
        self.protocol = protocol
        self.name = name
        self.client_id = client_id or unique(name)
        self.messages = queue.Queue()
        self._lock = threading.Condition()
        self._connack = None
        self._subacks = {}
        self._unsubacks = {}
        self._disconnected = None
        self.paho = None

    def _new_paho(self, clean):
        """A fresh paho client object for each connection, same client id."""
        client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=self.protocol,
            reconnect_on_failure=False,
            # v3.1.1 takes clean_session here; v5 takes clean_start in connect().
            clean_session=None if self.protocol == V5 else clean,
            transport=TRANSPORT["transport"],
        )
        if TRANSPORT["transport"] == "websockets":
            client.ws_set_options(path=TRANSPORT["path"])
        if TRANSPORT["ca"]:
            client.tls_set(ca_certs=TRANSPORT["ca"])
        client.on_connect = self._on_connect
        client.on_message = self._on_message
        client.on_subscribe = self._on_subscribe
        client.on_unsubscribe = self._on_unsubscribe
        client.on_disconnect = self._on_disconnect
        return client

    # -- callbacks (network thread)
    def _on_connect(self, client, userdata, flags, reason_code, properties):
        with self._lock:
            self._connack = (flags.session_present, reason_code, properties)
            self._lock.notify_all()

    def _on_message(self, client, userdata, message):
        self.messages.put(Received(message))

    def _on_subscribe(self, client, userdata, mid, reason_codes, properties):
        with self._lock:
            self._subacks[mid] = reason_codes
            self._lock.notify_all()

    def _on_unsubscribe(self, client, userdata, mid, reason_codes, properties):
        with self._lock:
            self._unsubacks[mid] = reason_codes
            self._lock.notify_all()

    def _on_disconnect(self, client, userdata, flags, reason_code, properties):
        with self._lock:
            self._disconnected = reason_code
            self._lock.notify_all()

    def _wait_for(self, predicate, what):
        with self._lock:
            if not self._lock.wait_for(predicate, timeout=WAIT):
                raise Fail(f"{self.name}: no {what} within {WAIT}s")

    # -- operations
    def connect(self, clean=True, properties=None, will=None, keepalive=60):
        """Connects and waits for the CONNACK. `will` is (topic, payload, qos,
        retain, properties). Returns (session_present, connack properties)."""
        self.paho = self._new_paho(clean)
        if will is not None:
            topic, payload, qos, retain, will_properties = will
            self.paho.will_set(topic, payload, qos=qos, retain=retain, properties=will_properties)
        with self._lock:
            self._connack = None
            self._disconnected = None
        kwargs = {"keepalive": keepalive}
        if self.protocol == V5:
            kwargs["clean_start"] = clean
            kwargs["properties"] = properties
        self.paho.connect(self.host, self.port, **kwargs)
        self.paho.loop_start()
        self._wait_for(lambda: self._connack is not None, "CONNACK")
        session_present, reason_code, connack_properties = self._connack
        check(not reason_code.is_failure,
              f"{self.name}: connection refused: {reason_code}")
        return session_present, connack_properties

    def subscribe(self, topic, qos=0, options=None, properties=None):
        """Subscribes and waits for the SUBACK; returns the granted QoS/reason
        code value and fails on an error reason code."""
        if self.protocol == V5:
            opts = options or mqtt.SubscribeOptions(qos=qos)
            result, mid = self.paho.subscribe(topic, options=opts, properties=properties)
        else:
            result, mid = self.paho.subscribe(topic, qos)
        check(result == mqtt.MQTT_ERR_SUCCESS, f"{self.name}: subscribe not sent: {result}")
        self._wait_for(lambda: mid in self._subacks, f"SUBACK for {topic!r}")
        codes = self._subacks[mid]
        code = codes[0]
        value = code.value if hasattr(code, "value") else int(code)
        check(value < 0x80, f"{self.name}: subscription to {topic!r} refused: {code}")
        return value

    def unsubscribe(self, topic):
        result, mid = self.paho.unsubscribe(topic)
        check(result == mqtt.MQTT_ERR_SUCCESS, f"{self.name}: unsubscribe not sent: {result}")
        self._wait_for(lambda: mid in self._unsubacks, f"UNSUBACK for {topic!r}")

    def publish(self, topic, payload, qos=0, retain=False, properties=None):
        """Publishes and, for QoS 1/2, waits until the flow completes."""
        info = self.paho.publish(topic, payload, qos=qos, retain=retain, properties=properties)
        check(info.rc == mqtt.MQTT_ERR_SUCCESS, f"{self.name}: publish not sent: {info.rc}")
        info.wait_for_publish(timeout=WAIT)
        check(info.is_published(), f"{self.name}: QoS {qos} publish to {topic!r} not acknowledged within {WAIT}s")
        return info

    def expect_message(self, what="a message", timeout=WAIT):
        try:
            return self.messages.get(timeout=timeout)
        except queue.Empty:
            raise Fail(f"{self.name}: expected {what}, nothing arrived within {timeout}s") from None

    def expect_no_message(self, what="message", duration=QUIET):
        try:
            message = self.messages.get(timeout=duration)
        except queue.Empty:
            return
        raise Fail(f"{self.name}: unexpected {what}: {message}")

    def disconnect(self, properties=None):
        """Clean DISCONNECT, then stops the network thread."""
        self.paho.disconnect(properties=properties)
        with self._lock:
            self._lock.wait_for(lambda: self._disconnected is not None, timeout=WAIT)
        self.paho.loop_stop()

    def drop(self):
        """Ends the connection without DISCONNECT, as a crashed client would."""
        self.paho.loop_stop()
        sock = self.paho.socket()
        # Over WebSocket, paho's socket is a wrapper around the TCP socket.
        sock = getattr(sock, "_socket", sock)
        if sock is not None:
            try:
                sock.shutdown(2)
            except OSError:
                pass
            sock.close()


def main(scenarios, description):
    """Parses the command line and runs one scenario."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--transport", choices=["tcp", "websockets"], default="tcp")
    parser.add_argument("--ws-path", default="/mqtt")
    parser.add_argument("--tls-ca", help="TLS (wss with websockets), trusting this CA file")
    parser.add_argument("scenario", choices=sorted(scenarios))
    args = parser.parse_args()
    TRANSPORT.update(transport=args.transport, path=args.ws_path, ca=args.tls_ca)

    def watchdog(signum, frame):
        sys.stderr.write(f"FAIL: {args.scenario}: watchdog: still running after {WATCHDOG_SECONDS}s\n")
        sys.stderr.flush()
        os._exit(3)

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(WATCHDOG_SECONDS)
    started = time.monotonic()
    try:
        scenarios[args.scenario](args.host, args.port)
    except Fail as failure:
        sys.stderr.write(f"FAIL: {args.scenario}: {failure}\n")
        sys.exit(1)
    except Exception:
        traceback.print_exc()
        sys.stderr.write(f"FAIL: {args.scenario}: unexpected error (traceback above)\n")
        sys.exit(2)
    print(f"PASS: {args.scenario} ({time.monotonic() - started:.2f}s)")
    # Network threads of clients a scenario left connected must not keep us alive.
    sys.stdout.flush()
    os._exit(0)


# ---------------------------------------------------------------------------
# Scenarios shared by MQTT 3.1.1 and 5.0 (the protocol is a parameter).

def session_properties(protocol, expiry):
    """CONNECT properties asking for a session that outlives the connection
    by `expiry` seconds (v5 only; v3.1.1 uses clean_session=False)."""
    if protocol != V5:
        return None
    return props(PacketTypes.CONNECT, SessionExpiryInterval=expiry)


def messages_until(client, marker, what):
    """Messages `client` receives before the one whose payload is `marker`."""
    before = []
    while True:
        message = client.expect_message(f"{what} (marker {marker!r})")
        if message.payload == marker:
            return before
        before.append(message)


def scenario_qos(host, port, protocol):
    """QoS 0/1/2 round trips, and delivery downgraded to the subscription QoS."""
    topic = unique("paho/qos")
    low_topic = unique("paho/qos-low")
    subscriber = Client(host, port, protocol, name="subscriber")
    subscriber.connect()
    check(subscriber.subscribe(topic, qos=2) == 2, "QoS 2 subscription not granted QoS 2")
    check(subscriber.subscribe(low_topic, qos=0) == 0, "QoS 0 subscription not granted QoS 0")
    publisher = Client(host, port, protocol, name="publisher")
    publisher.connect()
    for qos in (0, 1, 2):
        payload = f"qos {qos} ".encode() + bytes([0, 255, 10])
        publisher.publish(topic, payload, qos=qos)
        message = subscriber.expect_message(f"the QoS {qos} message")
        check((message.topic, message.payload, message.qos, message.retain) == (topic, payload, qos, False),
              f"QoS {qos}: got {message}")
    publisher.publish(low_topic, b"downgraded", qos=2)
    message = subscriber.expect_message("the downgraded message")
    check((message.payload, message.qos) == (b"downgraded", 0),
          f"a QoS 2 message on a QoS 0 subscription must arrive at QoS 0, got {message}")
    subscriber.disconnect()
    publisher.disconnect()


def scenario_retained(host, port, protocol):
    """A retained message reaches later subscribers (latest value only) and an
    empty retained publish clears it."""
    topic = unique("paho/retained")
    publisher = Client(host, port, protocol, name="publisher")
    publisher.connect()
    publisher.publish(topic, b"first value", qos=1, retain=True)
    publisher.publish(topic, b"latest value", qos=1, retain=True)

    late = Client(host, port, protocol, name="late subscriber")
    late.connect()
    late.subscribe(topic, qos=1)
    message = late.expect_message("the retained message")
    check((message.payload, message.retain, message.qos) == (b"latest value", True, 1),
          f"expected the latest retained value with retain=1 at QoS 1, got {message}")
    publisher.publish(topic, b"live marker", qos=1)
    check(messages_until(late, b"live marker", "live message") == [],
          "only the latest retained message may be delivered")

    publisher.publish(topic, b"", qos=1, retain=True)
    after_clear = Client(host, port, protocol, name="subscriber after clear")
    after_clear.connect()
    after_clear.subscribe(topic, qos=1)
    publisher.publish(topic, b"marker after clear", qos=1)
    stale = messages_until(after_clear, b"marker after clear", "live message")
    check(stale == [], f"retained message not cleared by an empty retained publish: {stale}")
    for client in (publisher, late, after_clear):
        client.disconnect()


def scenario_will(host, port, protocol):
    """The will is published when a client vanishes, not when it disconnects."""
    will_topic = unique("paho/will")
    listener = Client(host, port, protocol, name="listener")
    listener.connect()
    listener.subscribe(will_topic, qos=1)

    will_properties = None
    if protocol == V5:
        will_properties = props(PacketTypes.WILLMESSAGE, ContentType="text/plain",
                                UserProperty=[("cause", "crash")])
    doomed = Client(host, port, protocol, name="doomed")
    doomed.connect(will=(will_topic, b"doomed vanished", 1, False, will_properties))
    doomed.drop()
    message = listener.expect_message("the will message")
    check((message.topic, message.payload, message.qos, message.retain)
          == (will_topic, b"doomed vanished", 1, False), f"wrong will message: {message}")
    if protocol == V5:
        check(prop(message.properties, "ContentType") == "text/plain",
              f"will Content Type not forwarded: {message.properties}")
        check(prop(message.properties, "UserProperty") == [("cause", "crash")],
              f"will User Property not forwarded: {message.properties}")

    polite = Client(host, port, protocol, name="polite")
    polite.connect(will=(will_topic, b"polite will", 1, False, None))
    polite.disconnect()
    publisher = Client(host, port, protocol, name="publisher")
    publisher.connect()
    publisher.publish(will_topic, b"marker", qos=1)
    stale = messages_until(listener, b"marker", "the marker")
    check(stale == [], f"a will was published after a normal DISCONNECT: {stale}")
    listener.disconnect()
    publisher.disconnect()


def scenario_persistent_session(host, port, protocol):
    """QoS 1 and 2 messages published while a persistent session is offline
    are delivered when it resumes, and its subscriptions survive."""
    client_id = unique("paho-persistent")
    topic_q2 = unique("paho/persistent-q2")
    topic_q1 = unique("paho/persistent-q1")
    first = Client(host, port, protocol, client_id=client_id, name="first connection")
    session_present, _ = first.connect(clean=protocol == V5, properties=session_properties(protocol, 300))
    check(not session_present, "a brand new session must not be reported as present")
    first.subscribe(topic_q2, qos=2)
    first.subscribe(topic_q1, qos=1)
    first.disconnect()

    publisher = Client(host, port, protocol, name="publisher")
    publisher.connect()
    publisher.publish(topic_q2, b"queued qos 2", qos=2)
    publisher.publish(topic_q1, b"queued qos 1", qos=1)

    resumed = Client(host, port, protocol, client_id=client_id, name="resumed connection")
    session_present, _ = resumed.connect(clean=False, properties=session_properties(protocol, 300))
    check(session_present, "the resumed session must be reported as present")
    got = {(m.topic, m.payload, m.qos) for m in
           (resumed.expect_message("a queued message") for _ in range(2))}
    expected = {(topic_q2, b"queued qos 2", 2), (topic_q1, b"queued qos 1", 1)}
    check(got == expected, f"queued messages: expected {expected}, got {got}")
    resumed.expect_no_message("duplicate of a queued message")

    publisher.publish(topic_q1, b"live after resume", qos=1)
    message = resumed.expect_message("a live message on the resumed subscription")
    check(message.payload == b"live after resume", f"got {message}")
    if protocol == V5:
        resumed.disconnect(properties=props(PacketTypes.DISCONNECT, SessionExpiryInterval=0))
    else:
        resumed.disconnect()
    publisher.disconnect()


SHARED_SCENARIOS = {
    "qos": scenario_qos,
    "retained": scenario_retained,
    "will": scenario_will,
    "persistent-session": scenario_persistent_session,
}
