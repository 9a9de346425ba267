"""Shared machinery of the MQTT-over-QUIC interop scripts (aioquic client).

Each script is run by tests/interop_aioquic.rs as

    python quic_xxx.py --host 127.0.0.1 --port UDP_PORT --cafile CERT.pem --tcp-port TCP_PORT [CHECK...]

and runs its named checks in order (all of them, or those named), printing
`ok <check>` for each. The first failure prints `FAIL <check>: <reason>` to
stderr and exits 1 (`--keep-going` runs the rest too, for diagnosis); an
unexpected exception exits 2; a watchdog ends a hung script with exit 3.

A check gets a `Ctx` that opens clients and closes them afterwards:
`QuicClient` (aioquic, one QUIC connection, any number of streams),
`TcpClient` (raw MQTT over TCP, same interface, for exact bytes) and
`PahoClient` (paho-mqtt over TCP, via paho_common). Every packet a
QUIC/TCP client receives lands in a per-stream inbox; checks `take` the
packets they expect, and `quiet` fails on anything left unconsumed. Every
check also asserts that the server never opened a stream toward the client.
"""

import argparse
import asyncio
import os
import signal
import socket
import sys
import time
import traceback
import uuid
from collections import defaultdict, deque

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic import events
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.connection import QuicConnection
from aioquic.quic.packet import QuicProtocolVersion

import quic_mqtt as m
from paho_common import Client as _PahoClient
from paho_common import Fail, check

__all__ = ["Ctx", "Fail", "check", "main", "unique", "WAIT", "QUIET", "m"]

# Longest wait for one expected event.
WAIT = 4.0
# How long "nothing arrives" is observed for.
QUIET = 0.6
# The whole script must finish within this many seconds.
WATCHDOG_SECONDS = 22

# QUIC application error codes of the broker (EMQX compatible).
APP_NORMAL = 0
APP_ABNORMAL = 1
# RFC 9001 8.1: a TLS no_application_protocol alert is QUIC error 0x100 + 120.
NO_APPLICATION_PROTOCOL = 0x178


def unique(name):
    return f"{name}-{uuid.uuid4().hex[:10]}"


def hexdump(data):
    return data.hex(" ") if len(data) <= 64 else f"{data[:64].hex(' ')} ... ({len(data)} bytes)"


class Endpoint:
    """One MQTT connection seen from the client: per-stream inboxes of
    decoded server packets, and the MQTT flows on top of them."""

    def __init__(self, name, version):
        self.name = name
        self.version = version
        self.inbox = defaultdict(deque)   # stream id -> packets not yet taken
        self.log = []                     # (stream id, packet), every packet in arrival order
        self.decoders = {}
        self.fins = set()                 # streams the server finished (FIN)
        self.terminated = None            # why the connection ended, once it has
        self.decode_error = None
        self._waiters = []
        self._packet_id = 0

    # -- plumbing
    def send(self, stream, *packets, fin=False):
        raise NotImplementedError

    def _wake(self):
        for waiter in self._waiters:
            if not waiter.done():
                waiter.set_result(None)
        self._waiters.clear()

    def _data(self, stream, data, fin):
        decoder = self.decoders.setdefault(stream, m.Decoder(self.version))
        try:
            for packet in decoder.feed(data):
                self.inbox[stream].append(packet)
                self.log.append((stream, packet))
        except m.MalformedPacket as e:
            if self.decode_error is None:
                self.decode_error = f"stream {stream}: {e} (buffer {hexdump(bytes(decoder.buffer))})"
        if fin:
            self.fins.add(stream)
        self._wake()

    def next_id(self):
        self._packet_id = self._packet_id % 65535 + 1
        return self._packet_id

    def state(self):
        """What the connection holds, for failure messages."""
        pending = {s: list(q) for s, q in self.inbox.items() if q}
        parts = [f"unconsumed {pending}" if pending else "nothing unconsumed"]
        if self.fins:
            parts.append(f"server FIN on streams {sorted(self.fins)}")
        if self.terminated is not None:
            parts.append(f"connection ended: {self.describe_end()}")
        if self.decode_error:
            parts.append(f"undecodable server bytes: {self.decode_error}")
        return "; ".join(parts)

    def describe_end(self):
        return repr(self.terminated)

    async def until(self, predicate, what, timeout=WAIT):
        """Waits until `predicate()` is true (returns its value) or fails."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            if self.decode_error:
                raise Fail(f"{self.name}: the server sent undecodable bytes: {self.decode_error}")
            result = predicate()
            if result:
                return result
            left = deadline - loop.time()
            if left <= 0:
                raise Fail(f"{self.name}: no {what} within {timeout}s ({self.state()})")
            waiter = loop.create_future()
            self._waiters.append(waiter)
            try:
                await asyncio.wait_for(waiter, left)
            except asyncio.TimeoutError:
                pass

    async def take(self, stream, kind, what=None, timeout=WAIT, **fields):
        """Removes and returns the first packet of type `kind` on `stream`
        whose attributes equal `fields` (other packets stay queued)."""
        def find():
            queue = self.inbox[stream]
            for i, packet in enumerate(queue):
                if packet.kind == kind and all(getattr(packet, k, None) == v for k, v in fields.items()):
                    del queue[i]
                    return packet
            return None
        detail = f" with {fields}" if fields else ""
        return await self.until(find, what or f"{kind}{detail} on stream {stream}", timeout)

    def taken_nothing_else(self, what="packet"):
        pending = {s: list(q) for s, q in self.inbox.items() if q}
        check(not pending, f"{self.name}: unexpected {what}: {pending}")

    async def quiet(self, duration=QUIET, what="packet"):
        """Waits `duration`; fails if anything arrived that no one took."""
        await asyncio.sleep(duration)
        if self.decode_error:
            raise Fail(f"{self.name}: the server sent undecodable bytes: {self.decode_error}")
        self.taken_nothing_else(what)

    def index(self, stream, packet):
        """Position of a received packet in the arrival order."""
        for i, (s, p) in enumerate(self.log):
            if s == stream and p is packet:
                return i
        raise AssertionError("packet not in the log")

    # -- MQTT flows
    async def connect(self, client_id=None, clean=True, keepalive=60, will=None, props=None,
                      will_props=None, code=0):
        """CONNECT on the control stream; returns the CONNACK (checks its code)."""
        self.client_id = client_id or unique(self.name)
        self.send(0, m.connect(self.version, self.client_id, clean, keepalive, will, props, will_props))
        ack = await self.take(0, "CONNACK")
        check(ack.code == code, f"{self.name}: CONNACK code 0x{ack.code:02x}, expected 0x{code:02x}: {ack}")
        return ack

    async def subscribe(self, stream, topic_filter, qos=0, ack_stream=None, options=0, code=None):
        """SUBSCRIBE on `stream`; the SUBACK must come on `ack_stream` (default
        the same stream) granting `code` (default the requested QoS)."""
        ack_stream = stream if ack_stream is None else ack_stream
        packet_id = self.next_id()
        self.send(stream, m.subscribe(self.version, packet_id, topic_filter, qos, options))
        ack = await self.take(ack_stream, "SUBACK", f"SUBACK (id {packet_id}) on stream {ack_stream}",
                              packet_id=packet_id)
        wanted = qos if code is None else code
        check(ack.codes == [wanted], f"{self.name}: SUBACK codes {ack.codes}, expected [{wanted}]: {ack}")
        return ack

    async def unsubscribe(self, stream, topic_filter, code=0):
        packet_id = self.next_id()
        self.send(stream, m.unsubscribe(self.version, packet_id, topic_filter))
        ack = await self.take(stream, "UNSUBACK", f"UNSUBACK (id {packet_id}) on stream {stream}",
                              packet_id=packet_id)
        if self.version == m.V5:
            check(ack.codes == [code], f"{self.name}: UNSUBACK codes {ack.codes}, expected [0x{code:02x}]: {ack}")
        return ack

    async def publish(self, stream, topic, payload, qos=0, retain=False, ack_stream=None, props=None):
        """PUBLISH on `stream` and its whole flow: PUBACK, or PUBREC -> PUBREL
        -> PUBCOMP, expected (and PUBREL sent) on `ack_stream` (default the
        same stream)."""
        ack_stream = stream if ack_stream is None else ack_stream
        packet_id = self.next_id() if qos else None
        self.send(stream, m.publish(self.version, topic, payload, qos, packet_id, retain, props=props))
        if qos == 1:
            ack = await self.take(ack_stream, "PUBACK", f"PUBACK (id {packet_id}) on stream {ack_stream}",
                                  packet_id=packet_id)
            check(ack.code < 0x80, f"{self.name}: publish refused: {ack}")
        elif qos == 2:
            rec = await self.take(ack_stream, "PUBREC", f"PUBREC (id {packet_id}) on stream {ack_stream}",
                                  packet_id=packet_id)
            check(rec.code < 0x80, f"{self.name}: publish refused: {rec}")
            self.send(ack_stream, m.pubrel(self.version, packet_id))
            comp = await self.take(ack_stream, "PUBCOMP", f"PUBCOMP (id {packet_id}) on stream {ack_stream}",
                                   packet_id=packet_id)
            check(comp.code == 0, f"{self.name}: PUBCOMP with code 0x{comp.code:02x}: {comp}")
        return packet_id

    async def receive(self, stream, topic, payload=None, qos=None, ack=True, retain=None, timeout=WAIT):
        """Takes a PUBLISH to `topic` from `stream`, checks it and (unless
        `ack` is false) acknowledges it on the same stream: PUBACK, or PUBREC,
        then the PUBREL must come there too and gets a PUBCOMP."""
        p = await self.take(stream, "PUBLISH", f"PUBLISH to {topic!r} on stream {stream}", timeout, topic=topic)
        if payload is not None:
            check(p.payload == payload, f"{self.name}: payload {p.payload!r}, expected {payload!r}: {p}")
        if qos is not None:
            check(p.qos == qos, f"{self.name}: delivered at QoS {p.qos}, expected {qos}: {p}")
        if retain is not None:
            check(p.retain == retain, f"{self.name}: retain flag {p.retain}, expected {retain}: {p}")
        if ack and p.qos == 1:
            self.send(stream, m.puback(self.version, p.packet_id))
        elif ack and p.qos == 2:
            self.send(stream, m.pubrec(self.version, p.packet_id))
            await self.take(stream, "PUBREL", f"PUBREL (id {p.packet_id}) on stream {stream}",
                            packet_id=p.packet_id)
            self.send(stream, m.pubcomp(self.version, p.packet_id))
        return p

    async def ping(self, stream=0):
        self.send(stream, m.pingreq())
        return await self.take(stream, "PINGRESP", f"PINGRESP on stream {stream}")


class _Protocol(QuicConnectionProtocol):
    """Hands every QUIC event to its QuicClient."""
    client = None

    def quic_event_received(self, event):
        if self.client is not None:
            self.client._quic_event(event)


class QuicClient(Endpoint):
    """One QUIC connection (aioquic). Stream 0 is the control stream; data
    streams are 4, 8, ... (`new_stream()`), unidirectional ones 2, 6, ..."""

    def __init__(self, name, version):
        super().__init__(name, version)
        self.proto = None
        self.transport = None
        self.alpn = None
        self.closed_locally = False
        self.server_streams = []   # (event) for any server-initiated stream: must stay empty
        self.resets = {}           # stream id -> error code of a RESET_STREAM from the server
        self.stop_sending = {}     # stream id -> error code of a STOP_SENDING from the server
        self._next_bidi = 4
        self._next_uni = 2

    @classmethod
    async def open(cls, host, port, cafile, name, version=m.V5, alpn=("mqtt",), datagrams=False):
        client = cls(name, version)
        config = QuicConfiguration(
            is_client=True,
            alpn_protocols=list(alpn),
            cafile=cafile,
            server_name="localhost",
            supported_versions=[QuicProtocolVersion.VERSION_1],
            # RFC 9221: advertise DATAGRAM support (needed to send datagrams too).
            max_datagram_frame_size=65536 if datagrams else None,
        )
        loop = asyncio.get_running_loop()
        connection = QuicConnection(configuration=config)
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        transport, proto = await loop.create_datagram_endpoint(lambda: _Protocol(connection), sock=sock)
        proto.client = client
        client.proto, client.transport = proto, transport
        proto.connect((host, port))
        try:
            await asyncio.wait_for(proto.wait_connected(), WAIT)
        except ConnectionError:
            pass  # the handshake failed; `terminated` says how
        except asyncio.TimeoutError:
            client.release()
            raise Fail(f"{name}: no QUIC handshake with {host}:{port} within {WAIT}s")
        return client

    @property
    def connected(self):
        return self.alpn is not None

    def _quic_event(self, event):
        stream = getattr(event, "stream_id", None)
        if stream is not None and stream & 1:
            self.server_streams.append(event)
        if isinstance(event, events.HandshakeCompleted):
            self.alpn = event.alpn_protocol
        elif isinstance(event, events.StreamDataReceived):
            self._data(stream, event.data, event.end_stream)
        elif isinstance(event, events.StreamReset):
            self.resets[stream] = event.error_code
        elif isinstance(event, events.StopSendingReceived):
            self.stop_sending[stream] = event.error_code
        elif isinstance(event, events.ConnectionTerminated):
            self.terminated = event
        self._wake()

    def describe_end(self):
        t = self.terminated
        kind = "application" if t.frame_type is None else f"transport (frame type {t.frame_type})"
        who = "after the script's own close()" if self.closed_locally else "not initiated by the script"
        return f"{kind} close, error code {t.error_code}, reason {t.reason_phrase!r}, {who}"

    def state(self):
        text = super().state()
        if self.resets:
            text += f"; server RESET_STREAM {self.resets}"
        if self.stop_sending:
            text += f"; server STOP_SENDING {self.stop_sending}"
        return text

    def new_stream(self, uni=False):
        """The id of a new client stream (opened by its first send)."""
        if uni:
            stream, self._next_uni = self._next_uni, self._next_uni + 4
        else:
            stream, self._next_bidi = self._next_bidi, self._next_bidi + 4
        return stream

    def send(self, stream, *packets, fin=False):
        self.send_many([(stream, b"".join(packets), fin)])

    def send_many(self, items):
        """Queues (stream, bytes, fin) items, then transmits them together."""
        check(self.terminated is None, f"{self.name}: cannot send, {self.state()}")
        for stream, data, fin in items:
            self.proto._quic.send_stream_data(stream, data, end_stream=fin)
        self.proto.transmit()

    def send_datagram(self, data):
        """One QUIC DATAGRAM frame (the connection must have been opened with datagrams)."""
        self.proto._quic.send_datagram_frame(data)
        self.proto.transmit()

    def reset(self, stream, code=0):
        self.proto._quic.reset_stream(stream, code)
        self.proto.transmit()

    def close(self, code=APP_NORMAL, reason=""):
        """Closes the QUIC connection with an application error code."""
        if self.terminated is None and not self.closed_locally:
            self.closed_locally = True
            self.proto.close(error_code=code, reason_phrase=reason)

    async def closed(self, code, what, timeout=WAIT):
        """The server must close the connection with application error `code`."""
        await self.until(lambda: self.terminated is not None, f"connection close ({what})", timeout)
        t = self.terminated
        check(not self.closed_locally, f"{self.name}: expected the server to close ({what}); {self.state()}")
        check(t.frame_type is None and t.reason_phrase != "Idle timeout",
              f"{self.name}: expected an application close with code {code} ({what}); got {self.describe_end()}")
        check(t.error_code == code,
              f"{self.name}: application error code {t.error_code}, expected {code} ({what}); {self.describe_end()}")

    def alive(self, what):
        check(self.terminated is None, f"{self.name}: the connection must be alive ({what}); {self.state()}")

    async def disconnect(self):
        """DISCONNECT on the control stream; the server must then close the
        QUIC connection with application error 0, sending nothing else."""
        self.send(0, m.disconnect(self.version))
        await self.closed(APP_NORMAL, "after DISCONNECT")
        self.taken_nothing_else("packet before the close that followed DISCONNECT")

    def server_opened(self):
        seen = list(self.server_streams)
        if self.proto is not None:
            quic = self.proto._quic
            for stream in list(quic._streams) + list(getattr(quic, "_streams_finished", ())):
                if stream & 1:
                    seen.append(f"stream {stream} in aioquic's stream table")
        return seen

    def release(self):
        if self.transport is not None:
            self.transport.close()
            self.transport = None

    async def shutdown(self):
        if self.terminated is None and self.proto is not None:
            self.close()
            try:
                await asyncio.wait_for(self.proto.wait_closed(), 2)
            except asyncio.TimeoutError:
                pass
        self.release()


class TcpClient(Endpoint):
    """Raw MQTT over TCP with the same interface (stream 0 only)."""

    @classmethod
    async def open(cls, host, port, name, version=m.V5):
        client = cls(name, version)
        client.reader, client.writer = await asyncio.wait_for(asyncio.open_connection(host, port), WAIT)
        client.task = asyncio.ensure_future(client._read())
        return client

    async def _read(self):
        while True:
            try:
                data = await self.reader.read(65536)
            except (ConnectionError, OSError) as e:
                self.terminated = f"socket error {e!r}"
                break
            self._data(0, data, fin=not data)
            if not data:
                self.terminated = "end of stream (server closed the TCP connection)"
                break
        self._wake()

    def send(self, stream, *packets, fin=False):
        assert stream == 0
        self.writer.write(b"".join(packets))

    async def closed(self, what, timeout=WAIT):
        await self.until(lambda: self.terminated is not None, f"end of the TCP connection ({what})", timeout)

    async def shutdown(self):
        self.task.cancel()
        self.writer.close()


class PahoClient:
    """paho_common.Client (paho-mqtt, TCP) with its blocking calls run in a thread."""

    def __init__(self, host, port, version, name):
        self.client = _PahoClient(host, port, version, name=name)
        self.connected = False

    async def connect(self, **kwargs):
        result = await asyncio.to_thread(self.client.connect, **kwargs)
        self.connected = True
        return result

    async def subscribe(self, topic, qos=0):
        return await asyncio.to_thread(self.client.subscribe, topic, qos)

    async def publish(self, topic, payload, qos=0, retain=False):
        return await asyncio.to_thread(self.client.publish, topic, payload, qos, retain)

    async def expect_message(self, what="a message", timeout=WAIT):
        return await asyncio.to_thread(self.client.expect_message, what, timeout)

    async def expect_no_message(self, what="message", duration=QUIET):
        return await asyncio.to_thread(self.client.expect_no_message, what, duration)

    async def disconnect(self):
        if self.connected:
            self.connected = False
            await asyncio.to_thread(self.client.disconnect)

    async def shutdown(self):
        await self.disconnect()


class Ctx:
    """What a check gets: the addresses, and client factories whose clients
    are closed when the check ends."""

    def __init__(self, args):
        self.host = args.host
        self.port = args.port
        self.cafile = args.cafile
        self.tcp_port = args.tcp_port
        self.clients = []

    async def quic(self, name, version=m.V5, alpn=("mqtt",), handshake=True, datagrams=False):
        client = await QuicClient.open(self.host, self.port, self.cafile, name, version, alpn, datagrams)
        self.clients.append(client)
        if handshake:
            check(client.connected, f"{name}: QUIC handshake failed: {client.state()}")
        return client

    async def tcp(self, name, version=m.V5):
        client = await TcpClient.open(self.host, self.tcp_port, name, version)
        self.clients.append(client)
        return client

    def paho(self, name, version=m.V5):
        client = PahoClient(self.host, self.tcp_port, version, name)
        self.clients.append(client)
        return client

    async def quic_connected(self, name, version=m.V5, **connect):
        """A QUIC client that has sent CONNECT and received a successful CONNACK."""
        client = await self.quic(name, version)
        await client.connect(**connect)
        return client

    def check_no_server_streams(self):
        for client in self.clients:
            if isinstance(client, QuicClient):
                opened = client.server_opened()
                check(not opened, f"{client.name}: the server opened a stream toward the client: {opened}")

    async def close_all(self):
        for client in self.clients:
            try:
                await client.shutdown()
            except Exception:  # cleanup must not hide the check's own result
                pass


def main(checks, description):
    """Parses the command line and runs the checks (a list of (name, coroutine function))."""
    names = [name for name, _ in checks]
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True, help="UDP port of the QUIC listener")
    parser.add_argument("--cafile", required=True, help="the broker's certificate (PEM)")
    parser.add_argument("--tcp-port", type=int, required=True, help="TCP port of the broker")
    parser.add_argument("--keep-going", action="store_true", help="run every check even after a failure")
    parser.add_argument("check", nargs="*", help=f"checks to run (default: all): {', '.join(names)}")
    args = parser.parse_args()
    unknown = [n for n in args.check if n not in names]
    if unknown:
        parser.error(f"unknown checks {unknown}; known: {names}")
    selected = [(n, f) for n, f in checks if not args.check or n in args.check]

    def watchdog(signum, frame):
        sys.stderr.write(f"FAIL watchdog: the script still runs after {WATCHDOG_SECONDS}s\n")
        sys.stderr.flush()
        os._exit(3)

    signal.signal(signal.SIGALRM, watchdog)
    signal.alarm(WATCHDOG_SECONDS)
    status = asyncio.run(_run(selected, args))
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # paho network threads must not keep the script alive


async def _run(selected, args):
    status = 0
    started = time.monotonic()
    for name, function in selected:
        ctx = Ctx(args)
        t0 = time.monotonic()
        try:
            await function(ctx)
            ctx.check_no_server_streams()
        except Fail as failure:
            sys.stderr.write(f"FAIL {name}: {failure}\n")
            status = status or 1
        except Exception:
            traceback.print_exc()
            sys.stderr.write(f"FAIL {name}: unexpected error (traceback above)\n")
            status = status or 2
        else:
            print(f"ok {name} ({time.monotonic() - t0:.2f}s)")
        finally:
            await ctx.close_all()
        if status and not args.keep_going:
            break
    print(f"{len(selected)} checks run in {time.monotonic() - started:.2f}s, "
          f"{'all passed' if not status else 'FAILED'}")
    return status
