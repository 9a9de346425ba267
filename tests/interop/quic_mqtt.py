"""A small MQTT 3.1.1 / 5.0 codec for the MQTT-over-QUIC interop scripts.

Encoders build client-to-server packets as bytes; `Decoder` turns the bytes
of one stream (fed in arbitrary pieces) into `Packet`s sent by the server.
Only what the scripts need is here: no AUTH, no username/password. The
protocol version is 4 (MQTT 3.1.1) or 5 (MQTT 5.0).
"""

import struct

V311 = 4
V5 = 5

# Packet type numbers (high nibble of the first byte).
CONNECT, CONNACK, PUBLISH, PUBACK, PUBREC, PUBREL, PUBCOMP = 1, 2, 3, 4, 5, 6, 7
SUBSCRIBE, SUBACK, UNSUBSCRIBE, UNSUBACK = 8, 9, 10, 11
PINGREQ, PINGRESP, DISCONNECT, AUTH = 12, 13, 14, 15

NAMES = {
    CONNECT: "CONNECT", CONNACK: "CONNACK", PUBLISH: "PUBLISH", PUBACK: "PUBACK",
    PUBREC: "PUBREC", PUBREL: "PUBREL", PUBCOMP: "PUBCOMP", SUBSCRIBE: "SUBSCRIBE",
    SUBACK: "SUBACK", UNSUBSCRIBE: "UNSUBSCRIBE", UNSUBACK: "UNSUBACK",
    PINGREQ: "PINGREQ", PINGRESP: "PINGRESP", DISCONNECT: "DISCONNECT", AUTH: "AUTH",
}

# MQTT 5.0 properties used by the scripts (identifier -> name, value type).
SESSION_EXPIRY = 0x11
RECEIVE_MAXIMUM = 0x21
REASON_STRING = 0x1F
USER_PROPERTY = 0x26
PROPERTY_TYPES = {
    0x01: "byte", 0x02: "u32", 0x03: "str", 0x08: "str", 0x09: "bin", 0x0B: "varint",
    0x11: "u32", 0x12: "str", 0x13: "u16", 0x15: "str", 0x16: "bin", 0x17: "byte",
    0x18: "u32", 0x19: "byte", 0x1A: "str", 0x1C: "str", 0x1F: "str", 0x21: "u16",
    0x22: "u16", 0x23: "u16", 0x24: "byte", 0x25: "byte", 0x26: "pair", 0x27: "u32",
    0x28: "byte", 0x29: "byte", 0x2A: "byte",
}


class MalformedPacket(Exception):
    """The server sent bytes that are not a valid MQTT packet."""


class Packet:
    """A decoded server packet: `kind` is its name ("PUBLISH", ...), the
    other attributes depend on the type (packet_id, code, codes, topic,
    payload, qos, retain, dup, session_present, properties)."""

    def __init__(self, kind, raw, **fields):
        self.kind = kind
        self.raw = raw
        self.properties = []
        self.__dict__.update(fields)

    def prop(self, identifier, default=None):
        for key, value in self.properties:
            if key == identifier:
                return value
        return default

    def __repr__(self):
        fields = {k: v for k, v in self.__dict__.items() if k not in ("kind", "raw") and v != []}
        inner = ", ".join(f"{k}={v!r}" for k, v in fields.items())
        return f"{self.kind}({inner}; bytes {self.raw.hex(' ')})" if len(self.raw) <= 48 \
            else f"{self.kind}({inner}; {len(self.raw)} bytes)"


# ---------------------------------------------------------------------------
# Encoding

def varint(n):
    out = bytearray()
    while True:
        byte, n = n % 128, n // 128
        out.append(byte | (0x80 if n else 0))
        if not n:
            return bytes(out)


def utf8(text):
    data = text.encode() if isinstance(text, str) else bytes(text)
    return struct.pack("!H", len(data)) + data


def properties(props):
    """MQTT 5.0 properties from a list of (identifier, value) pairs."""
    body = bytearray()
    for identifier, value in props or []:
        body += varint(identifier)
        kind = PROPERTY_TYPES[identifier]
        if kind == "byte":
            body.append(value)
        elif kind == "u16":
            body += struct.pack("!H", value)
        elif kind == "u32":
            body += struct.pack("!I", value)
        elif kind == "varint":
            body += varint(value)
        elif kind in ("str", "bin"):
            body += utf8(value)
        else:
            body += utf8(value[0]) + utf8(value[1])
    return varint(len(body)) + bytes(body)


def packet(first_byte, body):
    return bytes([first_byte]) + varint(len(body)) + bytes(body)


def connect(version, client_id, clean=True, keepalive=60, will=None, props=None, will_props=None):
    """CONNECT; `will` is (topic, payload, qos, retain)."""
    flags = 0x02 if clean else 0
    if will is not None:
        _, _, will_qos, will_retain = will
        flags |= 0x04 | (will_qos << 3) | (0x20 if will_retain else 0)
    body = utf8("MQTT") + bytes([version, flags]) + struct.pack("!H", keepalive)
    if version == V5:
        body += properties(props)
    body += utf8(client_id)
    if will is not None:
        if version == V5:
            body += properties(will_props)
        body += utf8(will[0]) + utf8(will[1])
    return packet(0x10, body)


def publish(version, topic, payload, qos=0, packet_id=None, retain=False, dup=False, props=None):
    first = 0x30 | (qos << 1) | (0x01 if retain else 0) | (0x08 if dup else 0)
    body = utf8(topic)
    if qos:
        body += struct.pack("!H", packet_id)
    if version == V5:
        body += properties(props)
    return packet(first, body + bytes(payload))


def _ack(first, version, packet_id, code):
    body = struct.pack("!H", packet_id)
    if version == V5 and code:
        body += bytes([code])
    return packet(first, body)


def puback(version, packet_id, code=0):
    return _ack(0x40, version, packet_id, code)


def pubrec(version, packet_id, code=0):
    return _ack(0x50, version, packet_id, code)


def pubrel(version, packet_id, code=0):
    return _ack(0x62, version, packet_id, code)


def pubcomp(version, packet_id, code=0):
    return _ack(0x70, version, packet_id, code)


def subscribe(version, packet_id, topic_filter, qos=0, options=0, props=None):
    """SUBSCRIBE to one filter; `options` are the other 5.0 option bits."""
    body = struct.pack("!H", packet_id)
    if version == V5:
        body += properties(props)
    return packet(0x82, body + utf8(topic_filter) + bytes([qos | options]))


def unsubscribe(version, packet_id, topic_filter):
    body = struct.pack("!H", packet_id)
    if version == V5:
        body += properties(None)
    return packet(0xA2, body + utf8(topic_filter))


def pingreq():
    return b"\xc0\x00"


def disconnect(version, code=0):
    if version == V5 and code:
        return packet(0xE0, bytes([code]) + properties(None))
    return b"\xe0\x00"


# ---------------------------------------------------------------------------
# Decoding

class _Reader:
    def __init__(self, data):
        self.data = data
        self.pos = 0

    def left(self):
        return len(self.data) - self.pos

    def take(self, n):
        if self.left() < n:
            raise MalformedPacket(f"truncated: wanted {n} bytes, {self.left()} left")
        chunk = self.data[self.pos:self.pos + n]
        self.pos += n
        return bytes(chunk)

    def byte(self):
        return self.take(1)[0]

    def u16(self):
        return struct.unpack("!H", self.take(2))[0]

    def u32(self):
        return struct.unpack("!I", self.take(4))[0]

    def varint(self):
        value, shift = 0, 0
        for _ in range(4):
            byte = self.byte()
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
            shift += 7
        raise MalformedPacket("variable byte integer longer than 4 bytes")

    def binary(self):
        return self.take(self.u16())

    def string(self):
        try:
            return self.binary().decode()
        except UnicodeDecodeError as e:
            raise MalformedPacket(f"invalid UTF-8 string: {e}") from None

    def properties(self):
        end = self.varint()
        if end > self.left():
            raise MalformedPacket("property length beyond the packet")
        stop = self.pos + end
        props = []
        while self.pos < stop:
            identifier = self.varint()
            kind = PROPERTY_TYPES.get(identifier)
            if kind is None:
                raise MalformedPacket(f"unknown property 0x{identifier:02x}")
            if kind == "byte":
                value = self.byte()
            elif kind == "u16":
                value = self.u16()
            elif kind == "u32":
                value = self.u32()
            elif kind == "varint":
                value = self.varint()
            elif kind == "str":
                value = self.string()
            elif kind == "bin":
                value = self.binary()
            else:
                value = (self.string(), self.string())
            props.append((identifier, value))
        if self.pos != stop:
            raise MalformedPacket("properties overrun their length")
        return props


def decode_packet(version, first, body, raw):
    """One server packet from its first byte and body."""
    kind = first >> 4
    flags = first & 0x0F
    name = NAMES.get(kind)
    r = _Reader(body)
    expected_flags = 0x02 if kind == PUBREL else 0
    if kind != PUBLISH and flags != expected_flags:
        raise MalformedPacket(f"{name}: reserved flags 0x{flags:x}")
    if kind == CONNACK:
        ack_flags = r.byte()
        p = Packet(name, raw, session_present=bool(ack_flags & 1), code=r.byte())
        if version == V5:
            p.properties = r.properties()
    elif kind == PUBLISH:
        qos = (flags >> 1) & 3
        if qos == 3:
            raise MalformedPacket("PUBLISH with QoS 3")
        topic = r.string()
        packet_id = r.u16() if qos else None
        props = r.properties() if version == V5 else []
        p = Packet(name, raw, topic=topic, qos=qos, retain=bool(flags & 1),
                   dup=bool(flags & 8), packet_id=packet_id, payload=r.take(r.left()))
        p.properties = props
    elif kind in (PUBACK, PUBREC, PUBREL, PUBCOMP):
        p = Packet(name, raw, packet_id=r.u16(), code=0)
        if r.left():
            p.code = r.byte()
            if r.left():
                p.properties = r.properties()
    elif kind in (SUBACK, UNSUBACK):
        p = Packet(name, raw, packet_id=r.u16())
        if version == V5:
            p.properties = r.properties()
        p.codes = list(r.take(r.left()))
    elif kind == PINGRESP:
        p = Packet(name, raw)
    elif kind == DISCONNECT:
        if version != V5 and body:
            raise MalformedPacket("MQTT 3.1.1 DISCONNECT with a body")
        p = Packet(name, raw, code=r.byte() if r.left() else 0)
        if r.left():
            p.properties = r.properties()
    else:
        raise MalformedPacket(f"a server does not send packet type {kind} ({name})")
    if r.left():
        raise MalformedPacket(f"{name}: {r.left()} trailing bytes")
    return p


class Decoder:
    """Incremental decoder of one stream's bytes."""

    def __init__(self, version):
        self.version = version
        self.buffer = bytearray()

    def feed(self, data):
        """Appends `data`; returns the packets now complete."""
        self.buffer += data
        packets = []
        while True:
            header = self._header()
            if header is None:
                return packets
            header_len, body_len = header
            total = header_len + body_len
            raw = bytes(self.buffer[:total])
            del self.buffer[:total]
            packets.append(decode_packet(self.version, raw[0], raw[header_len:], raw))

    def _header(self):
        """(header length, body length) if a whole packet is buffered."""
        length, shift = 0, 0
        for i in range(1, 5):
            if i >= len(self.buffer):
                return None
            byte = self.buffer[i]
            length |= (byte & 0x7F) << shift
            if not byte & 0x80:
                if len(self.buffer) < 1 + i + length:
                    return None
                return 1 + i, length
            shift += 7
        raise MalformedPacket("remaining length longer than 4 bytes")
