// MQTT.js over WebTransport: a WebSocket-shaped object over one WebTransport stream, so an
// MQTT.js app switches from WebSocket to mqttd's WebTransport with one option
// (proto-ext/webtransport.md). Plain JavaScript, no build step, no dependency:
//
//   <script src="mqtt.min.js"></script>            <!-- MQTT.js 5 browser bundle -->
//   <script src="mqtt-webtransport.js"></script>   <!-- this file: window.mqttWebTransport -->
//   const client = mqtt.connect("wss://broker.example:1884/mqtt", {
//     protocolVersion: 5,
//     createWebsocket: mqttWebTransport.createWebsocket({
//       // Only for a self-signed development certificate (quic.webtransport_dev_cert): its
//       // hash, from https://broker:8084/.well-known/mqttd-webtransport-cert-hash.
//       serverCertificateHashes: [{ algorithm: "sha-256", value: mqttWebTransport.hexToBytes(hex) }],
//       datagrams: true,   // ask for QoS 0 deliveries in datagrams (also sets the CONNECT property)
//       publishDatagrams: true,   // send our QoS 0 PUBLISH packets in datagrams
//     }),
//     properties: { userProperties: { "quic-datagrams": "on" } },  // with datagrams: true
//   });
//
// The URL's scheme is ignored (MQTT.js insists on ws/wss): the session goes to
// https://HOST:PORT/PATH, the broker's QUIC port. MQTT runs on the session's first
// bidirectional stream, exactly as over a WebSocket. With `datagrams`, QoS 0 PUBLISH packets
// the broker sends as WebTransport datagrams are handed to MQTT.js between whole stream
// packets (never inside one), and counted in `datagramsReceived`. With `publishDatagrams`,
// each QoS 0 PUBLISH MQTT.js sends after a successful CONNACK goes in one datagram instead of
// the stream when it has no Topic Alias and fits the session's datagram size (counted in
// `datagramsSent`; the others stay on the stream, counted in `datagramsFallenBack`). Like any
// QoS 0 datagram it may be lost, and it may overtake packets sent before it on the stream.
(function (global) {
  "use strict";

  const CONNECTING = 0, OPEN = 1, CLOSING = 2, CLOSED = 3;

  function hexToBytes(hex) {
    const clean = hex.replace(/[^0-9a-fA-F]/g, "");
    const bytes = new Uint8Array(clean.length / 2);
    for (let i = 0; i < bytes.length; i++) bytes[i] = parseInt(clean.substr(i * 2, 2), 16);
    return bytes;
  }

  // Tracks where MQTT packets end in the stream's bytes (fixed header: type byte, then the
  // remaining length as a variable byte integer), so datagrams go in only between packets.
  class PacketBoundary {
    constructor() { this.header = []; this.remaining = 0; }
    // Feeds `bytes`; true when they end exactly at a packet boundary.
    feed(bytes) {
      for (let i = 0; i < bytes.length;) {
        if (this.remaining > 0) {
          const n = Math.min(this.remaining, bytes.length - i);
          this.remaining -= n; i += n; continue;
        }
        this.header.push(bytes[i++]);
        const h = this.header;
        if (h.length >= 2 && (h[h.length - 1] & 0x80) === 0) {
          let len = 0;
          for (let k = h.length - 1; k >= 1; k--) len = len * 128 + (h[k] & 0x7f);
          this.header = []; this.remaining = len;
        }
      }
      return this.remaining === 0 && this.header.length === 0;
    }
  }

  // Splits the bytes MQTT.js sends into whole packets (MQTT.js may write one packet in
  // several chunks, or several packets in one).
  class PacketSplitter {
    constructor() { this.pending = new Uint8Array(0); }
    // Feeds `bytes`; returns the whole packets now complete (each a Uint8Array).
    feed(bytes) {
      let buf = bytes;
      if (this.pending.length) {
        buf = new Uint8Array(this.pending.length + bytes.length);
        buf.set(this.pending); buf.set(bytes, this.pending.length);
      }
      const packets = [];
      let at = 0;
      for (;;) {
        const header = fixedHeader(buf, at);
        if (!header || at + header.size + header.remaining > buf.length) break;
        const end = at + header.size + header.remaining;
        packets.push(buf.subarray(at, end));
        at = end;
      }
      this.pending = buf.slice(at);
      return packets;
    }
  }

  // The fixed header at `at`: its size and the remaining length, or null if incomplete.
  function fixedHeader(buf, at) {
    let remaining = 0, multiplier = 1;
    for (let i = at + 1; i < buf.length && i < at + 5; i++) {
      remaining += (buf[i] & 0x7f) * multiplier;
      multiplier *= 128;
      if ((buf[i] & 0x80) === 0) return { size: i - at + 1, remaining };
    }
    return null;
  }

  // Reads a variable byte integer at `at`: [value, next offset].
  function varint(buf, at) {
    let value = 0, multiplier = 1;
    for (;;) {
      const b = buf[at++];
      value += (b & 0x7f) * multiplier;
      multiplier *= 128;
      if ((b & 0x80) === 0) return [value, at];
    }
  }

  // True for a QoS 0 PUBLISH that may travel in a datagram (proto-ext/datagrams.md): a topic
  // name present and, in MQTT 5.0, no Topic Alias property (0x23).
  function datagramPublish(packet, v5) {
    if ((packet[0] & 0xf6) !== 0x30) return false;   // PUBLISH, QoS 0 (the retain bit may be set)
    let at = fixedHeader(packet, 0).size;
    const topicLength = (packet[at] << 8) | packet[at + 1];
    if (topicLength === 0) return false;
    at += 2 + topicLength;
    if (!v5) return true;
    const [propsLength, start] = varint(packet, at);
    for (let p = start; p < start + propsLength;) {
      const id = packet[p++];
      if (id === 0x23) return false;                  // Topic Alias
      if (id === 0x01) p += 1;                        // Payload Format Indicator
      else if (id === 0x02) p += 4;                   // Message Expiry Interval
      else if (id === 0x0b) p = varint(packet, p)[1]; // Subscription Identifier
      else if (id === 0x03 || id === 0x08 || id === 0x09) p += 2 + ((packet[p] << 8) | packet[p + 1]);
      else if (id === 0x26) {                         // User Property: two strings
        p += 2 + ((packet[p] << 8) | packet[p + 1]);
        p += 2 + ((packet[p] << 8) | packet[p + 1]);
      } else return false;                            // unknown: keep it on the stream
    }
    return true;
  }

  class WebTransportSocket extends EventTarget {
    constructor(url, options) {
      super();
      this.CONNECTING = CONNECTING; this.OPEN = OPEN; this.CLOSING = CLOSING; this.CLOSED = CLOSED;
      this.readyState = CONNECTING;
      this.binaryType = "arraybuffer";
      this.bufferedAmount = 0;
      this.protocol = "mqtt";
      this.url = url.replace(/^wss?:/, "https:");
      this.datagramsReceived = 0;
      this.datagramsGranted = false;
      this.datagramsSent = 0;
      this.datagramsFallenBack = 0;
      // publishDatagrams: our packets split whole, the protocol version from our CONNECT, and
      // whether the broker accepted it (it drops datagrams before a successful CONNACK).
      this._splitter = options.publishDatagrams ? new PacketSplitter() : null;
      this._v5 = false;
      this._accepted = false;
      this._firstReply = [];
      this._boundary = new PacketBoundary();
      this._atBoundary = true;
      this._heldDatagrams = [];
      global.mqttWebTransport.last = this;
      const init = {};
      if (options.serverCertificateHashes) init.serverCertificateHashes = options.serverCertificateHashes;
      this._open(init, options).catch((e) => this._fail(e));
    }

    async _open(init, options) {
      this._wt = new WebTransport(this.url, init);
      this._wt.closed.then(() => this._closed(), (e) => this._fail(e));
      await this._wt.ready;
      const stream = await this._wt.createBidirectionalStream();
      this._writer = stream.writable.getWriter();
      this.readyState = OPEN;
      this.dispatchEvent(new Event("open"));
      if (options.datagrams) this._readDatagrams();
      const reader = stream.readable.getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        if (this._splitter && !this._accepted) this._watchConnack(value);
        this._atBoundary = this._boundary.feed(value);
        this._deliver(value);
        if (this._atBoundary) this._flushDatagrams();
      }
      this._closed();
    }

    async _readDatagrams() {
      const reader = this._wt.datagrams.readable.getReader();
      for (;;) {
        let result;
        try { result = await reader.read(); } catch (e) { return; }
        if (result.done) return;
        this.datagramsReceived++;
        this.datagramsGranted = true;
        this._heldDatagrams.push(result.value);
        if (this._atBoundary) this._flushDatagrams();
      }
    }

    _flushDatagrams() {
      for (const d of this._heldDatagrams.splice(0)) this._deliver(d);
    }

    _deliver(bytes) {
      const data = bytes.buffer.slice(bytes.byteOffset, bytes.byteOffset + bytes.byteLength);
      this.dispatchEvent(new MessageEvent("message", { data }));
    }

    // The broker's first packet is the CONNACK: return code / reason code 0 is success.
    _watchConnack(bytes) {
      if (this._firstReply === null) return;
      for (const b of bytes) this._firstReply.push(b);
      const header = fixedHeader(this._firstReply, 0);
      if (!header || this._firstReply.length < header.size + 2) return;
      this._accepted = this._firstReply[0] === 0x20 && this._firstReply[header.size + 1] === 0;
      this._firstReply = null;
    }

    send(chunk) {
      if (this.readyState !== OPEN) throw new Error("WebTransport stream not open");
      const bytes = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk);
      if (this._splitter) {
        this._sendSplit(bytes);
        return;
      }
      this._write(bytes);
    }

    // publishDatagrams: each whole packet goes on the stream, or, if it is a QoS 0 PUBLISH
    // after a successful CONNACK that fits, in a datagram.
    _sendSplit(bytes) {
      const stream = [];
      const max = this._wt.datagrams.maxDatagramSize || 0;
      for (const packet of this._splitter.feed(bytes)) {
        // CONNECT: the protocol level follows the protocol name "MQTT" (6 bytes).
        if (packet[0] === 0x10) this._v5 = packet[fixedHeader(packet, 0).size + 6] === 5;
        if (this._accepted && datagramPublish(packet, this._v5)) {
          if (packet.length <= max) {
            if (!this._datagramWriter) this._datagramWriter = this._wt.datagrams.writable.getWriter();
            this._datagramWriter.write(packet.slice()).catch(() => {});
            this.datagramsSent++;
            continue;
          }
          this.datagramsFallenBack++;
        }
        stream.push(packet);
      }
      if (!stream.length) return;
      const total = stream.reduce((n, p) => n + p.length, 0);
      const out = new Uint8Array(total);
      let at = 0;
      for (const p of stream) { out.set(p, at); at += p.length; }
      this._write(out);
    }

    _write(bytes) {
      this.bufferedAmount += bytes.byteLength;
      this._writer.write(bytes).then(
        () => { this.bufferedAmount -= bytes.byteLength; },
        (e) => this._fail(e),
      );
    }

    close() {
      if (this.readyState >= CLOSING) return;
      this.readyState = CLOSING;
      try { this._wt.close(); } catch (e) { /* already closed */ }
      this._closed();
    }

    _fail(error) {
      if (this.readyState === CLOSED) return;
      const event = new Event("error");
      event.error = error;
      this.dispatchEvent(event);
      this._closed();
    }

    _closed() {
      if (this.readyState === CLOSED) return;
      this.readyState = CLOSED;
      this.dispatchEvent(new CloseEvent("close", { code: 1000, wasClean: true }));
    }
  }

  // MQTT.js's `createWebsocket` option: (url, protocols, options) => a WebSocket-like object.
  function createWebsocket(options) {
    options = options || {};
    return (url) => new WebTransportSocket(url, options);
  }

  global.mqttWebTransport = { createWebsocket, hexToBytes, WebTransportSocket };
})(typeof window !== "undefined" ? window : globalThis);
