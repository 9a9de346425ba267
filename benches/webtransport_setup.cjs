// Connection set-up time in Chromium: MQTT.js over WebTransport (examples/mqtt-webtransport.js)
// against MQTT.js over WebSocket + TLS, alternating, against one mqttd. Run by
// benches/webtransport_setup.sh inside a network namespace whose link to the broker has a
// fixed delay; usable alone against any broker:
//
//   node benches/webtransport_setup.cjs CONFIG_JSON
//   CONFIG_JSON: {"node_modules": DIR, "chromium": PATH, "host": "10.77.0.2", "quic_port": N,
//                 "wss_port": N, "ws_port": N (serves the dev certificate hash), "rounds": N}
//
// Per round and transport, two times from the page's clock (performance.now()):
//   ready:     the transport is open (WebTransport `ready` + its stream / WebSocket `open`);
//   connected: MQTT.js's `connect` event (CONNACK received), what an app waits for.
// Prints one JSON object: per transport the samples and their median and 90th percentile.
"use strict";

const fs = require("fs");
const http = require("http");
const os = require("os");
const path = require("path");

const config = JSON.parse(process.argv[2]);
const { chromium } = require(path.join(config.node_modules, "playwright-core"));
const MQTT_BUNDLE = path.join(config.node_modules, "mqtt", "dist", "mqtt.min.js");
const ADAPTER = path.join(__dirname, "..", "examples", "mqtt-webtransport.js");

function get(url) {
  return new Promise((resolve, reject) => {
    http.get(url, (res) => {
      let body = "";
      res.on("data", (d) => (body += d));
      res.on("end", () => resolve(body));
    }).on("error", reject);
  });
}

function serve() {
  const files = {
    "/": ["text/html", "<!doctype html><title>set-up time</title>" +
      '<script src="/mqtt.min.js"></script><script src="/mqtt-webtransport.js"></script>'],
    "/mqtt.min.js": ["text/javascript", fs.readFileSync(MQTT_BUNDLE)],
    "/mqtt-webtransport.js": ["text/javascript", fs.readFileSync(ADAPTER)],
  };
  const server = http.createServer((req, res) => {
    const file = files[req.url];
    if (!file) return res.writeHead(404).end();
    res.writeHead(200, { "Content-Type": file[0] }).end(file[1]);
  });
  return new Promise((resolve) => server.listen(0, "127.0.0.1", () => resolve(server)));
}

// In the page: one MQTT.js connection over `kind`; resolves to {ready, connected} in ms.
async function connectOnce(page, kind, target) {
  return page.evaluate(async ({ kind, target }) => {
    const t0 = performance.now();
    let ready = null;
    const options = {
      protocolVersion: 5, reconnectPeriod: 0, connectTimeout: 10000,
      clientId: "setup-" + kind + "-" + Math.random().toString(16).slice(2, 10),
    };
    let url;
    if (kind === "webtransport") {
      const create = mqttWebTransport.createWebsocket({
        serverCertificateHashes: [{ algorithm: "sha-256", value: mqttWebTransport.hexToBytes(target.hash) }],
      });
      options.createWebsocket = (u) => {
        const socket = create(u);
        socket.addEventListener("open", () => (ready = performance.now() - t0));
        return socket;
      };
      url = `wss://${target.host}:${target.quic_port}/mqtt`;
    } else {
      options.createWebsocket = (u, protocols) => {
        const socket = new WebSocket(u, protocols);
        socket.addEventListener("open", () => (ready = performance.now() - t0));
        return socket;
      };
      url = `wss://${target.host}:${target.wss_port}/mqtt`;
    }
    const client = mqtt.connect(url, options);
    await new Promise((resolve, reject) => {
      client.once("connect", resolve);
      client.once("error", (e) => reject(new Error(kind + ": " + e.message)));
      client.once("close", () => reject(new Error(kind + ": closed before CONNACK")));
      setTimeout(() => reject(new Error(kind + ": no CONNACK within 10 s")), 10000);
    }).catch((e) => { client.end(true); throw e; });
    const connected = performance.now() - t0;
    await client.endAsync();
    return { ready, connected };
  }, { kind, target });
}

function summary(samples) {
  const sorted = [...samples].sort((a, b) => a - b);
  const at = (q) => sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))];
  return { median: +at(0.5).toFixed(1), p90: +at(0.9).toFixed(1), samples: samples.map((s) => +s.toFixed(1)) };
}

async function main() {
  const hashBody = await get(`http://${config.host}:${config.ws_port}/.well-known/mqttd-webtransport-cert-hash`);
  const hash = JSON.parse(hashBody).value;
  const target = { host: config.host, quic_port: config.quic_port, wss_port: config.wss_port, hash };
  const server = await serve();
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "mqttd-setup-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: config.chromium,
    headless: true,
    ignoreHTTPSErrors: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      "--ignore-certificate-errors"],
  });
  const failures = [];
  const results = { webtransport: { ready: [], connected: [] }, websocket_tls: { ready: [], connected: [] } };
  try {
    const page = await context.newPage();
    await page.goto(`http://127.0.0.1:${server.address().port}/`);
    // One warm-up each (page JIT, Chromium's network service), not counted.
    await connectOnce(page, "webtransport", target);
    await connectOnce(page, "websocket", target);
    for (let round = 0; round < config.rounds; round++) {
      for (const kind of round % 2 ? ["websocket", "webtransport"] : ["webtransport", "websocket"]) {
        let r;
        for (let attempt = 1; ; attempt++) {
          try {
            r = await connectOnce(page, kind, target);
            break;
          } catch (e) {
            // A failed set-up (none seen on a quiet link) is reported, and the round retried.
            failures.push(`${kind}: ${e.message}`);
            if (attempt === 3) throw e;
          }
        }
        const key = kind === "webtransport" ? "webtransport" : "websocket_tls";
        results[key].ready.push(r.ready);
        results[key].connected.push(r.connected);
      }
    }
  } finally {
    await context.close();
    server.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  const out = { failures };
  for (const [kind, r] of Object.entries(results)) {
    out[kind] = { ready_ms: summary(r.ready), connected_ms: summary(r.connected) };
  }
  console.log(JSON.stringify(out));
}

main().catch((e) => {
  console.error(e.stack || String(e));
  process.exit(1);
});
