// MQTT.js in headless Chromium against a running mqttd (driven by tests/browser.rs).
//
//   node tests/browser/mqtt_in_chromium.cjs CONFIG_JSON
//
// CONFIG_JSON: {"node_modules": DIR, "chromium": PATH, "mqttd": PATH, "cert": PEM,
//   "tcp_port": N, "quic_port": N, "targets": [{"name": "ws", "url": "ws://127.0.0.1:N/mqtt"}, ...]}
// A target may carry "webtransport": {"url": "https://127.0.0.1:N/mqtt", "cert_hash": HEX}
// to connect through examples/mqtt-webtransport.js instead of a WebSocket, and
// "datagrams": true to also check QoS 0 deliveries in WebTransport datagrams, and
// "publish_datagrams": true to send the browser's QoS 0 publishes in datagrams.
//
// For each target the page (served by this script over HTTP on 127.0.0.1) connects MQTT.js,
// subscribes, and receives what mosquitto_pub sends over TCP and what the bundled client
// (`mqttd pub --quic`) sends over QUIC; then it publishes while mosquitto_sub (TCP) and
// `mqttd sub --quic` wait for its message. Prints "PASS <target>: ..." per target, exits 0 when
// all pass; on failure prints "FAIL <target>: reason" and exits 1. Never downloads a browser:
// Chromium is Debian's (executablePath).
"use strict";

const fs = require("fs");
const http = require("http");
const os = require("os");
const path = require("path");
const { spawn } = require("child_process");

const config = JSON.parse(process.argv[2]);
const { chromium } = require(path.join(config.node_modules, "playwright-core"));
const MQTT_BUNDLE = path.join(config.node_modules, "mqtt", "dist", "mqtt.min.js");
const ADAPTER = path.join(__dirname, "..", "..", "examples", "mqtt-webtransport.js");
const WAIT_MS = 10000;

function fail(message) {
  throw new Error(message);
}

/// Runs a program to completion (killed after WAIT_MS); resolves to {code, stdout, stderr}.
function run(program, args) {
  return new Promise((resolve) => {
    const child = spawn(program, args, { stdio: ["ignore", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d) => (stdout += d));
    child.stderr.on("data", (d) => (stderr += d));
    const timer = setTimeout(() => child.kill("SIGKILL"), WAIT_MS);
    child.on("error", (e) => {
      clearTimeout(timer);
      resolve({ code: -1, stdout, stderr: stderr + String(e) });
    });
    child.on("close", (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

function describe(what, result) {
  return `${what} exited ${result.code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`;
}

/// The test page and the scripts it loads, on 127.0.0.1 (a page on a loopback origin may open
/// loopback connections without Local Network Access prompts).
function serve() {
  const files = {
    "/mqtt.min.js": ["text/javascript", fs.readFileSync(MQTT_BUNDLE)],
    "/favicon.ico": ["image/x-icon", ""],
  };
  let scripts = '<script src="/mqtt.min.js"></script>';
  if (config.targets.some((t) => t.webtransport)) {
    files["/mqtt-webtransport.js"] = ["text/javascript", fs.readFileSync(ADAPTER)];
    scripts += '<script src="/mqtt-webtransport.js"></script>';
  }
  files["/"] = ["text/html", "<!doctype html><title>mqttd browser test</title>" + scripts];
  const server = http.createServer((req, res) => {
    const file = files[req.url];
    if (!file) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { "Content-Type": file[0] }).end(file[1]);
  });
  return new Promise((resolve) => {
    server.listen(0, "127.0.0.1", () => resolve(server));
  });
}

/// In the page: connect MQTT.js to `target` and subscribe to `topic`.
async function browserConnect(page, target, topic) {
  await page.evaluate(async ({ target, topic }) => {
    window.received = [];
    const options = {
      clientId: "browser-" + target.name + "-" + Math.random().toString(16).slice(2, 8),
      protocolVersion: 5,
      reconnectPeriod: 0,
      connectTimeout: 8000,
    };
    let url = target.url;
    if (target.webtransport) {
      // examples/mqtt-webtransport.js: a WebSocket-shaped object over a WebTransport stream.
      options.createWebsocket = mqttWebTransport.createWebsocket({
        serverCertificateHashes: target.webtransport.cert_hash
          ? [{ algorithm: "sha-256", value: mqttWebTransport.hexToBytes(target.webtransport.cert_hash) }]
          : undefined,
        datagrams: !!target.datagrams,
        publishDatagrams: !!target.publish_datagrams,
      });
      if (target.datagrams) {
        // proto-ext/datagrams.md: ask for QoS 0 deliveries in datagrams.
        options.properties = { userProperties: { "quic-datagrams": "on" } };
      }
      url = target.webtransport.url.replace(/^https:/, "wss:");
    }
    const client = mqtt.connect(url, options);
    window.client = client;
    await new Promise((resolve, reject) => {
      client.once("connect", (connack) => {
        window.connack = connack;
        resolve();
      });
      client.once("error", (e) => reject(new Error("connect: " + e.message)));
      client.once("close", () => reject(new Error("connection closed before CONNACK")));
    });
    client.on("message", (t, payload) => {
      window.received.push([t, new TextDecoder().decode(payload)]);
    });
    const granted = await client.subscribeAsync(topic, { qos: 1 });
    if (!granted.length || granted[0].qos > 2) {
      throw new Error("subscription refused: " + JSON.stringify(granted));
    }
  }, { target, topic });
}

async function browserReceives(page, payload, what) {
  try {
    await page.waitForFunction(
      (p) => window.received.some((m) => m[1] === p),
      payload,
      { timeout: WAIT_MS, polling: 20 },
    );
  } catch (e) {
    const got = await page.evaluate(() => JSON.stringify(window.received));
    fail(`${what}: the browser did not receive ${JSON.stringify(payload)} (got ${got})`);
  }
}

/// Starts `program` (a subscriber expecting one message) and makes the browser publish
/// `payload` every 100 ms until it exits (so no race with its SUBSCRIBE).
async function browserPublishesTo(page, topic, payload, program, args, what) {
  const done = run(program, args);
  let finished = false;
  done.then(() => (finished = true));
  while (!finished) {
    await page.evaluate(({ topic, payload }) => window.client.publishAsync(topic, payload),
      { topic, payload });
    await Promise.race([done, new Promise((r) => setTimeout(r, 100))]);
  }
  const result = await done;
  if (result.code !== 0 || !result.stdout.includes(payload)) {
    fail(`${what}: ${describe(program, result)}`);
  }
}

async function checkTarget(context, base, target) {
  const page = await context.newPage();
  const errors = [];
  page.on("pageerror", (e) => errors.push(String(e)));
  page.on("console", (m) => {
    // The refused session of the 404 check is logged by Chromium itself.
    const refused = target.webtransport && target.webtransport.refused_path;
    if (m.type() === "error" && !(refused && m.text().includes(refused))) errors.push(m.text());
  });
  try {
    await page.goto(base + "/");
    if (target.webtransport && target.webtransport.refused_path) {
      // A session on another path is refused (404); nothing else is affected.
      const refused = await page.evaluate(async (t) => {
        const init = { serverCertificateHashes: [{ algorithm: "sha-256",
          value: mqttWebTransport.hexToBytes(t.cert_hash) }] };
        try {
          const wt = new WebTransport(t.refused_path, init);
          await wt.ready;
          wt.close();
          return "accepted";
        } catch (e) {
          return "refused: " + e.message + " " + (e.streamErrorCode ?? "") + " " + (e.source ?? "");
        }
      }, target.webtransport);
      if (!refused.startsWith("refused")) fail(`a session on another path was ${refused}`);
      console.log(`${target.name}: a session on another path: ${refused}`);
    }
    const inTopic = `browser/${target.name}/in`;
    const outTopic = `browser/${target.name}/out`;
    await browserConnect(page, target, inTopic);

    // TCP (mosquitto_pub) -> browser.
    let r = await run("mosquitto_pub", ["-h", "127.0.0.1", "-p", String(config.tcp_port),
      "-t", inTopic, "-m", `from-tcp-${target.name}`, "-q", "1"]);
    if (r.code !== 0) fail(describe("mosquitto_pub", r));
    await browserReceives(page, `from-tcp-${target.name}`, "TCP -> browser");

    // QUIC (the bundled client) -> browser.
    r = await run(config.mqttd, ["pub", "--quic", "--cafile", config.cert, "-h", "127.0.0.1",
      "-p", String(config.quic_port), "-t", inTopic, "-m", `from-quic-${target.name}`, "-q", "1"]);
    if (r.code !== 0) fail(describe("mqttd pub --quic", r));
    await browserReceives(page, `from-quic-${target.name}`, "QUIC -> browser");

    // Browser -> TCP (mosquitto_sub) and -> QUIC (mqttd sub --quic).
    await browserPublishesTo(page, outTopic, `to-tcp-${target.name}`, "mosquitto_sub",
      ["-h", "127.0.0.1", "-p", String(config.tcp_port), "-t", outTopic, "-C", "1", "-W", "10"],
      "browser -> TCP");
    await browserPublishesTo(page, outTopic, `to-quic-${target.name}`, config.mqttd,
      ["sub", "--quic", "--cafile", config.cert, "-h", "127.0.0.1", "-p", String(config.quic_port),
        "-t", outTopic, "-C", "1", "-W", "10"],
      "browser -> QUIC");

    if (target.datagrams) {
      const granted = await page.evaluate(() => {
        const props = (window.connack && window.connack.properties) || {};
        return JSON.stringify(props.userProperties || {});
      });
      if (!granted.includes('"quic-datagrams":"on"')) {
        fail(`QoS 0 datagrams were not granted: CONNACK user properties ${granted}`);
      }
      // QoS 0 from the QUIC client reaches the browser in WebTransport datagrams.
      const before = await page.evaluate(() => mqttWebTransport.last.datagramsReceived);
      r = await run(config.mqttd, ["pub", "--quic", "--cafile", config.cert, "-h", "127.0.0.1",
        "-p", String(config.quic_port), "-t", inTopic, "-m", `datagram-${target.name}`, "-q", "0"]);
      if (r.code !== 0) fail(describe("mqttd pub --quic -q 0", r));
      await browserReceives(page, `datagram-${target.name}`, "QoS 0 datagram -> browser");
      const after = await page.evaluate(() => mqttWebTransport.last.datagramsReceived);
      if (!(after > before)) fail(`the QoS 0 message did not come in a datagram (${before} -> ${after})`);
    }
    if (target.publish_datagrams) {
      // The browser's QoS 0 publishes above (to TCP and QUIC) went in datagrams.
      const sent = await page.evaluate(() => ({
        sent: mqttWebTransport.last.datagramsSent,
        fallback: mqttWebTransport.last.datagramsFallenBack,
      }));
      if (!(sent.sent >= 2)) fail(`the browser's QoS 0 publishes did not go in datagrams: ${JSON.stringify(sent)}`);
      console.log(`${target.name}: browser -> broker datagrams ${JSON.stringify(sent)}`);
    }
    await page.evaluate(() => window.client.endAsync());
    if (errors.length) fail("page errors: " + errors.join("; "));
    console.log(`PASS ${target.name}: TCP and QUIC to the browser and back`);
  } finally {
    await page.close();
  }
}

async function main() {
  const server = await serve();
  const base = `http://127.0.0.1:${server.address().port}`;
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "mqttd-chromium-"));
  const extraArgs = config.chromium_args || [];
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: config.chromium,
    headless: true,
    ignoreHTTPSErrors: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
      // wss: the broker's certificate is self-signed.
      "--ignore-certificate-errors", ...extraArgs],
  });
  let failed = false;
  try {
    for (const target of config.targets) {
      try {
        await checkTarget(context, base, target);
      } catch (e) {
        failed = true;
        console.log(`FAIL ${target.name}: ${e.message}`);
      }
    }
  } finally {
    await context.close();
    server.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
  process.exit(failed ? 1 : 0);
}

main().catch((e) => {
  console.log(`FAIL: ${e.stack || e}`);
  process.exit(1);
});
