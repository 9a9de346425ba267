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
//     }),
//     properties: { userProperties: { "quic-datagrams": "on" } },  // with datagrams: true
//   });
//
// The URL's scheme is ignored (MQTT.js insists on ws/wss): the session goes to
// https://HOST:PORT/PATH, the broker's QUIC port. MQTT runs on the session's first
// bidirectional stream, exactly as over a WebSocket. With `datagrams`, QoS 0 PUBLISH packets
// the broker sends as WebTransport datagrams are handed to MQTT.js between whole stream
// packets (never inside one), and counted in `datagramsReceived`.
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

    send(chunk) {
      if (this.readyState !== OPEN) throw new Error("WebTransport stream not open");
      const bytes = chunk instanceof Uint8Array ? chunk : new Uint8Array(chunk);
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
