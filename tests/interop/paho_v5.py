"""paho-mqtt interop scenarios over MQTT 5.0: the shared scenarios of
paho_common.py plus the 5.0 features (see each scenario's docstring)."""

import functools
import queue
import time

import paho.mqtt.client as mqtt
from paho.mqtt.packettypes import PacketTypes

import paho_common as common
from paho_common import Client, V5, check, messages_until, prop, props, unique


def will_delay(host, port):
    """A will with a Will Delay Interval is published after the delay, not at once."""
    will_topic = unique("paho5/will-delay")
    listener = Client(host, port, V5, name="listener")
    listener.connect()
    listener.subscribe(will_topic, qos=1)
    doomed = Client(host, port, V5, name="doomed")
    doomed.connect(
        properties=props(PacketTypes.CONNECT, SessionExpiryInterval=30),
        will=(will_topic, b"delayed will", 1, False, props(PacketTypes.WILLMESSAGE, WillDelayInterval=2)),
    )
    dropped_at = time.monotonic()
    doomed.drop()
    listener.expect_no_message("will before its delay", duration=1.0)
    message = listener.expect_message("the delayed will", timeout=6.0)
    waited = time.monotonic() - dropped_at
    check(message.payload == b"delayed will", f"got {message}")
    check(waited >= 1.5, f"will published {waited:.2f}s after the drop, delay was 2s")
    listener.disconnect()


def session_expiry(host, port):
    """A session survives a reconnect within its Session Expiry Interval and is
    gone (with its subscriptions) after it."""
    client_id = unique("paho5-expiry")
    topic = unique("paho5/expiry")
    expiry = props(PacketTypes.CONNECT, SessionExpiryInterval=2)
    client = Client(host, port, V5, client_id=client_id, name="expiring client")
    client.connect(clean=True, properties=expiry)
    client.subscribe(topic, qos=1)
    client.disconnect()

    client = Client(host, port, V5, client_id=client_id, name="expiring client")
    session_present, _ = client.connect(clean=False, properties=expiry)
    check(session_present, "session must still exist right after disconnecting (expiry 2s)")
    client.disconnect()

    time.sleep(4.0)
    client = Client(host, port, V5, client_id=client_id, name="expiring client")
    session_present, _ = client.connect(clean=False, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=0))
    check(not session_present, "session must have expired 4s after a disconnect with expiry 2s")
    publisher = Client(host, port, V5, name="publisher")
    publisher.connect()
    publisher.publish(topic, b"to an expired subscription", qos=1)
    client.expect_no_message("message for a subscription of the expired session")
    client.disconnect()
    publisher.disconnect()


def subscription_identifiers(host, port):
    """Subscription Identifiers come back with the messages they matched, and
    only to the subscriber that set them."""
    base = unique("paho5/subid")
    client = Client(host, port, V5, name="subscriber with ids")
    _, connack = client.connect()
    check(prop(connack, "SubscriptionIdentifierAvailable", 1) == 1,
          "broker says subscription identifiers are not available")
    client.subscribe(f"{base}/+", qos=1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=7))
    client.subscribe(f"{base}/x", qos=1, properties=props(PacketTypes.SUBSCRIBE, SubscriptionIdentifier=300))
    plain = Client(host, port, V5, name="subscriber without ids")
    plain.connect()
    plain.subscribe(f"{base}/x", qos=1)

    publisher = Client(host, port, V5, name="publisher")
    publisher.connect()
    publisher.publish(f"{base}/x", b"both", qos=1)
    # One copy carrying both identifiers, or one copy per subscription [MQTT-3.3.4-3..5].
    ids = []
    copies = [client.expect_message("a message matching two subscriptions")]
    try:
        copies.append(client.messages.get(timeout=common.QUIET))
    except queue.Empty:
        pass
    for copy in copies:
        check(copy.payload == b"both", f"got {copy}")
        ids.extend(prop(copy.properties, "SubscriptionIdentifier", []))
    check(sorted(ids) == [7, 300], f"expected subscription identifiers 7 and 300, got {ids}")
    message = plain.expect_message("the message without identifiers")
    check(prop(message.properties, "SubscriptionIdentifier") is None,
          f"a subscriber without identifiers got {message.properties}")

    publisher.publish(f"{base}/y", b"one", qos=1)
    message = client.expect_message("a message matching one subscription")
    check(prop(message.properties, "SubscriptionIdentifier") == [7], f"got {message.properties}")
    for c in (client, plain, publisher):
        c.disconnect()


def no_local(host, port):
    """With No Local a client does not get its own messages; others still do."""
    topic = unique("paho5/no-local")
    talker = Client(host, port, V5, name="no-local subscriber")
    talker.connect()
    talker.subscribe(topic, options=mqtt.SubscribeOptions(qos=1, noLocal=True))
    other = Client(host, port, V5, name="other subscriber")
    other.connect()
    other.subscribe(topic, qos=1)

    talker.publish(topic, b"own message", qos=1)
    message = other.expect_message("the no-local client's message")
    check(message.payload == b"own message", f"got {message}")
    other.publish(topic, b"marker from other", qos=1)
    own = messages_until(talker, b"marker from other", "the other client's message")
    check(own == [], f"No Local subscriber received its own message: {own}")
    talker.disconnect()
    other.disconnect()


def retain_as_published(host, port):
    """Retain As Published keeps the RETAIN flag on forwarded messages;
    without it the flag is cleared."""
    topic = unique("paho5/rap")
    keeper = Client(host, port, V5, name="retain-as-published subscriber")
    keeper.connect()
    keeper.subscribe(topic, options=mqtt.SubscribeOptions(qos=1, retainAsPublished=True))
    plain = Client(host, port, V5, name="plain subscriber")
    plain.connect()
    plain.subscribe(topic, options=mqtt.SubscribeOptions(qos=1, retainAsPublished=False))
    publisher = Client(host, port, V5, name="publisher")
    publisher.connect()
    publisher.publish(topic, b"retained live", qos=1, retain=True)
    message = keeper.expect_message("the retained message (RAP=1)")
    check(message.retain, f"Retain As Published subscriber got retain=0: {message}")
    message = plain.expect_message("the retained message (RAP=0)")
    check(not message.retain, f"subscriber without Retain As Published got retain=1 [MQTT-3.3.1-12]: {message}")
    publisher.publish(topic, b"", qos=1, retain=True)
    for c in (keeper, plain, publisher):
        c.disconnect()


def retain_handling(host, port):
    """Retain Handling 0 sends retained messages on every subscribe, 1 only for
    a new subscription, 2 never."""
    topic = unique("paho5/retain-handling")
    publisher = Client(host, port, V5, name="publisher")
    publisher.connect()
    publisher.publish(topic, b"retained", qos=1, retain=True)

    def retained_after_subscribe(client, handling, step):
        client.subscribe(topic, options=mqtt.SubscribeOptions(qos=1, retainHandling=handling))
        marker = f"marker {step}".encode()
        publisher.publish(topic, marker, qos=1)
        return [m.payload for m in messages_until(client, marker, f"retained messages ({step})")]

    client = Client(host, port, V5, name="subscriber")
    client.connect()
    got = retained_after_subscribe(client, 0, "rh=0 new")
    check(got == [b"retained"], f"Retain Handling 0, new subscription: expected the retained message, got {got}")
    got = retained_after_subscribe(client, 0, "rh=0 again")
    check(got == [b"retained"], f"Retain Handling 0, existing subscription: expected the retained message, got {got}")
    got = retained_after_subscribe(client, 1, "rh=1 existing")
    check(got == [], f"Retain Handling 1, existing subscription: expected nothing, got {got}")
    fresh = Client(host, port, V5, name="fresh subscriber")
    fresh.connect()
    got = retained_after_subscribe(fresh, 1, "rh=1 new")
    check(got == [b"retained"], f"Retain Handling 1, new subscription: expected the retained message, got {got}")
    never = Client(host, port, V5, name="rh=2 subscriber")
    never.connect()
    got = retained_after_subscribe(never, 2, "rh=2 new")
    check(got == [], f"Retain Handling 2: expected no retained message [MQTT-3.3.1-11], got {got}")
    publisher.publish(topic, b"", qos=1, retain=True)
    for c in (publisher, client, fresh, never):
        c.disconnect()


def topic_alias(host, port):
    """The broker accepts Topic Aliases from a client, including remapping an
    alias, and forwards full topic names to a subscriber that allows none."""
    first = unique("paho5/alias-a")
    second = unique("paho5/alias-b")
    subscriber = Client(host, port, V5, name="subscriber")
    subscriber.connect()
    subscriber.subscribe(first, qos=1)
    subscriber.subscribe(second, qos=1)
    publisher = Client(host, port, V5, name="publisher")
    _, connack = publisher.connect()
    maximum = prop(connack, "TopicAliasMaximum", 0)
    check(maximum >= 1, f"broker allows no topic aliases (Topic Alias Maximum {maximum})")

    def alias(value):
        return props(PacketTypes.PUBLISH, TopicAlias=value)

    publisher.publish(first, b"one", qos=1, properties=alias(1))
    publisher.publish("", b"two", qos=1, properties=alias(1))
    publisher.publish(second, b"three", qos=1, properties=alias(1))
    publisher.publish("", b"four", qos=0, properties=alias(1))
    publisher.publish("", b"five", qos=2, properties=alias(1))
    expected = [(first, b"one"), (first, b"two"), (second, b"three"), (second, b"four"), (second, b"five")]
    for topic, payload in expected:
        message = subscriber.expect_message(f"{payload!r} on {topic}")
        check((message.topic, message.payload) == (topic, payload),
              f"expected {payload!r} on {topic!r}, got {message}")
        check(prop(message.properties, "TopicAlias") is None,
              f"broker sent a Topic Alias to a client that allows none [MQTT-3.3.2-8]: {message.properties}")
    subscriber.disconnect()
    publisher.disconnect()


def message_expiry(host, port):
    """Message Expiry Interval: forwarded with the remaining time; expired
    messages are not delivered from an offline session or as retained."""
    live_topic = unique("paho5/expiry-live")
    queued_topic = unique("paho5/expiry-queued")
    retained_topic = unique("paho5/expiry-retained")
    publisher = Client(host, port, V5, name="publisher")
    publisher.connect()

    live = Client(host, port, V5, name="live subscriber")
    live.connect()
    live.subscribe(live_topic, qos=1)
    publisher.publish(live_topic, b"expires in 60s", qos=1,
                      properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=60))
    message = live.expect_message("the message with an expiry interval")
    remaining = prop(message.properties, "MessageExpiryInterval")
    check(remaining is not None and 0 < remaining <= 60,
          f"expected a Message Expiry Interval in 1..60 [MQTT-3.3.2-6], got {remaining}")
    live.disconnect()

    client_id = unique("paho5-expiry-offline")
    offline = Client(host, port, V5, client_id=client_id, name="offline subscriber")
    offline.connect(properties=props(PacketTypes.CONNECT, SessionExpiryInterval=300))
    offline.subscribe(queued_topic, qos=1)
    offline.disconnect()
    publisher.publish(queued_topic, b"short-lived", qos=1,
                      properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    publisher.publish(queued_topic, b"long-lived", qos=1,
                      properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=300))
    publisher.publish(retained_topic, b"short-lived retained", qos=1, retain=True,
                      properties=props(PacketTypes.PUBLISH, MessageExpiryInterval=1))
    time.sleep(2.5)

    resumed = Client(host, port, V5, client_id=client_id, name="resumed subscriber")
    session_present, _ = resumed.connect(clean=False, properties=props(PacketTypes.CONNECT, SessionExpiryInterval=0))
    check(session_present, "the offline session must still exist")
    message = resumed.expect_message("the long-lived queued message")
    check(message.payload == b"long-lived",
          f"an expired queued message was delivered [MQTT-3.3.2-5]: {message}")
    remaining = prop(message.properties, "MessageExpiryInterval")
    check(remaining is not None and remaining <= 298,
          f"queued message's expiry interval must be reduced by the time it waited, got {remaining}")
    resumed.expect_no_message("expired queued message")

    late = Client(host, port, V5, name="late subscriber")
    late.connect()
    late.subscribe(retained_topic, qos=1)
    publisher.publish(retained_topic, b"marker", qos=1)
    stale = messages_until(late, b"marker", "the marker")
    check(stale == [], f"an expired retained message was delivered: {stale}")
    for c in (publisher, resumed, late):
        c.disconnect()


def message_properties(host, port):
    """Response Topic, Correlation Data, Content Type, Payload Format Indicator
    and User Properties (order and duplicates kept) reach the subscriber."""
    topic = unique("paho5/properties")
    subscriber = Client(host, port, V5, name="subscriber")
    subscriber.connect()
    subscriber.subscribe(topic, qos=1)
    publisher = Client(host, port, V5, name="publisher")
    publisher.connect()
    user = [("b", "2"), ("a", "1"), ("b", "3"), ("ключ", "значение")]
    publisher.publish(topic, "{\"hello\": 1}".encode(), qos=1, properties=props(
        PacketTypes.PUBLISH,
        ResponseTopic="paho5/reply/here",
        CorrelationData=b"\x00\x01correlation\xff",
        ContentType="application/json",
        PayloadFormatIndicator=1,
        UserProperty=user,
    ))
    message = subscriber.expect_message("the message with properties")
    p = message.properties
    check(prop(p, "ResponseTopic") == "paho5/reply/here", f"Response Topic: {p}")
    check(prop(p, "CorrelationData") == b"\x00\x01correlation\xff", f"Correlation Data: {p}")
    check(prop(p, "ContentType") == "application/json", f"Content Type: {p}")
    check(prop(p, "PayloadFormatIndicator") == 1, f"Payload Format Indicator: {p}")
    check(prop(p, "UserProperty") == user, f"User Properties must be forwarded in order [MQTT-3.3.2-18]: {p}")
    subscriber.disconnect()
    publisher.disconnect()


def shared_subscription(host, port):
    """Two members of a shared subscription split the messages: each message
    goes to exactly one of them; a normal subscriber still gets them all."""
    topic = unique("paho5/shared")
    group = unique("group")
    publisher = Client(host, port, V5, name="publisher")
    _, connack = publisher.connect()
    check(prop(connack, "SharedSubscriptionAvailable", 1) == 1,
          "broker says shared subscriptions are not available")
    members = []
    for index in range(2):
        member = Client(host, port, V5, name=f"shared member {index}")
        member.connect()
        member.subscribe(f"$share/{group}/{topic}", qos=1)
        members.append(member)
    normal = Client(host, port, V5, name="normal subscriber")
    normal.connect()
    normal.subscribe(topic, qos=1)

    count = 20
    sent = [f"message {i}".encode() for i in range(count)]
    for payload in sent:
        publisher.publish(topic, payload, qos=1)
    received = [[] for _ in members]
    deadline = time.monotonic() + common.WAIT
    while sum(map(len, received)) < count and time.monotonic() < deadline:
        for index, member in enumerate(members):
            while not member.messages.empty():
                message = member.messages.get()
                check(message.topic == topic, f"shared message topic must be {topic!r}, got {message.topic!r}")
                received[index].append(message.payload)
        time.sleep(0.02)
    for member in members:
        member.expect_no_message("extra shared message", duration=0.3)
    everything = sorted(received[0] + received[1])
    check(everything == sorted(sent),
          f"each message must reach exactly one member: member 0 got {received[0]}, member 1 got {received[1]}")
    check(all(received), f"both members should get a share: {[len(r) for r in received]}")
    normal_got = [normal.expect_message("a message on the normal subscription").payload for _ in range(count)]
    check(sorted(normal_got) == sorted(sent), "the normal subscriber must get every message")
    print(f"shared split: {[len(r) for r in received]}")
    for c in members + [normal, publisher]:
        c.disconnect()


def request_response(host, port):
    """Request Response Information, and a request/response exchange using a
    Response Topic and Correlation Data."""
    plain = Client(host, port, V5, name="client not asking")
    _, connack = plain.connect()
    check(prop(connack, "ResponseInformation") is None,
          f"Response Information sent without being requested [MQTT-3.1.2-28]: {connack}")
    plain.disconnect()

    requester = Client(host, port, V5, name="requester")
    _, connack = requester.connect(properties=props(PacketTypes.CONNECT, RequestResponseInformation=1))
    information = prop(connack, "ResponseInformation")
    if information:
        reply_topic = f"{information.rstrip('/')}/{unique('reply')}"
        print(f"broker Response Information: {information!r}")
    else:
        # The server MAY send Response Information [MQTT-3.2.2.3.15]; none sent.
        reply_topic = unique("paho5/reply")
        print("broker sent no Response Information (allowed)")
    requester.subscribe(reply_topic, qos=1)

    request_topic = unique("paho5/request")
    responder = Client(host, port, V5, name="responder")
    responder.connect()
    responder.subscribe(request_topic, qos=1)
    requester.publish(request_topic, b"what time is it?", qos=1, properties=props(
        PacketTypes.PUBLISH, ResponseTopic=reply_topic, CorrelationData=b"request-42"))
    request = responder.expect_message("the request")
    response_topic = prop(request.properties, "ResponseTopic")
    correlation = prop(request.properties, "CorrelationData")
    check(response_topic == reply_topic and correlation == b"request-42",
          f"request properties not forwarded: {request.properties}")
    responder.publish(response_topic, b"tea time", qos=1, properties=props(
        PacketTypes.PUBLISH, CorrelationData=correlation))
    reply = requester.expect_message("the response")
    check((reply.payload, prop(reply.properties, "CorrelationData")) == (b"tea time", b"request-42"),
          f"wrong response: {reply}")
    requester.disconnect()
    responder.disconnect()


SCENARIOS = {name: functools.partial(scenario, protocol=V5)
             for name, scenario in common.SHARED_SCENARIOS.items()}
SCENARIOS.update({
    "will-delay": will_delay,
    "session-expiry": session_expiry,
    "subscription-identifiers": subscription_identifiers,
    "no-local": no_local,
    "retain-as-published": retain_as_published,
    "retain-handling": retain_handling,
    "topic-alias": topic_alias,
    "message-expiry": message_expiry,
    "message-properties": message_properties,
    "shared-subscription": shared_subscription,
    "request-response": request_response,
})

if __name__ == "__main__":
    common.main(SCENARIOS, __doc__)
