#!/usr/bin/env python3
"""Writes the seed inputs of the fuzz targets into corpus/<target>/ from the mqtt-seq byte
corpus (../../shared/mqtt-seq, or $MQTT_SEQ_DIR) and a few hand-written sequences.

The seeds were minimized together with what the fuzzers found (`cargo fuzz cmin`); rerun this
only to start a corpus afresh. Input formats: see src/fuzzing/*.rs."""
import glob, hashlib, json, os, sys

HERE = os.path.dirname(os.path.abspath(__file__))
SEQ = os.environ.get("MQTT_SEQ_DIR", os.path.join(HERE, "..", "..", "shared", "mqtt-seq"))

def write(target, data):
    d = os.path.join(HERE, "corpus", target)
    os.makedirs(d, exist_ok=True)
    name = hashlib.sha1(data).hexdigest()[:16]
    with open(os.path.join(d, name), "wb") as f:
        f.write(data)

def hexb(s):
    return bytes.fromhex("".join(s.split()))

def connect(ver, cid=b"a"):
    if ver == 5:
        body = b"\x00\x04MQTT\x05\x02\x00\x3c\x03\x21\x00\x14" + len(cid).to_bytes(2, "big") + cid
    else:
        body = b"\x00\x04MQTT\x04\x02\x00\x3c" + len(cid).to_bytes(2, "big") + cid
    return bytes([0x10, len(body)]) + body

def feed(slot, data):
    """broker_session operations feeding `data` to the control stream of `slot`."""
    out = b""
    for i in range(0, len(data), 255):
        chunk = data[i:i + 255]
        out += bytes([1 | slot << 3, len(chunk)]) + chunk
    return out

def cases():
    for path in sorted(glob.glob(os.path.join(SEQ, "*.json"))):
        for group in json.load(open(path)):
            if group.get("disable"):
                continue
            for case in group["tests"]:
                sends = [hexb(m["payload"]) for m in case["msgs"] if m["type"] == "send"]
                yield case.get("ver", 4), case.get("connect", True), sends

def main():
    seen = set()
    for ver, do_connect, sends in cases():
        key = (ver, do_connect, tuple(sends))
        if key in seen:
            continue
        seen.add(key)
        stream = (connect(ver) if do_connect else b"") + b"".join(sends)
        if do_connect:
            write("codec_decode", bytes([4 | (3 if ver == 5 else 2)]) + b"".join(sends))
        else:
            write("codec_decode", bytes([4]) + stream)
        # One connection with the case's bytes, a subscriber on another, then time passes.
        sub = connect(5, b"s") + hexb("82 08 0001 00 0001 23 02")
        script = b"\x00" + b"\x08" + feed(1, sub) + b"\x00" + feed(0, stream) + b"\x0b\x50\x02\x0b\xff"
        write("broker_session", script)
        for s in sends:
            if s and s[0] >> 4 == 3 and len(s) < 256:
                write("datagram", bytes([0 if ver == 5 else 1, len(s)]) + s)
    # QUIC: data streams and datagrams on a v5 connection with small limits.
    quic = b"\x01\x20" + feed(0, connect(5)) + b"\x05\x01\x0c" + hexb("82 0a 0001 00 0003 612f62 01") \
        + b"\x06\x08" + hexb("30 06 0003 612f62 78") + b"\x05\x81\x00" + b"\x07\x03"
    write("broker_session", quic)
    for h in ["11 00 50", "12 02 41 2C 50", "13 03 00 00", "14 AA", "12 C0 00 00 00 00 00 00 02 00 00",
              "11 01 00", "12 03 00 02"]:
        write("flow_header", hexb(h))

main()
