// Drives the admin dashboard in Debian's Chromium (playwright-core, no downloaded browser):
// loads the page, connects an MQTT client (npm `mqtt`), checks that the client appears in the
// client list and that publishing moves the message counter and the plot, and saves a
// screenshot.
//
// Usage: node dashboard.cjs ADMIN_URL MQTT_URL SCREENSHOT_PATH [QUIC_CLIENT_ID]
// With QUIC_CLIENT_ID (a client connected over QUIC on its control stream only), its row must
// show its QUIC figures: an RTT, 0 migrations and streams "1 / 0 / 0 / 0".
// Modules come from NODE_PATH (target/node/node_modules, installed by tests/run-all.sh).
"use strict";
const fs = require("fs");
const os = require("os");
const path = require("path");
const { chromium } = require("playwright-core");
const mqtt = require("mqtt");

const [adminUrl, mqttUrl, screenshot, quicClientId] = process.argv.slice(2);
const CHROMIUM = process.env.MQTTD_TEST_CHROMIUM || "/usr/lib/chromium/chromium";

function fail(message) {
  console.error("dashboard test: " + message);
  process.exit(1);
}

async function main() {
  const profile = fs.mkdtempSync(path.join(os.tmpdir(), "mqttd-dashboard-"));
  const context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    args: [
      "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
    viewport: { width: 1000, height: 700 },
  });
  try {
    const page = await context.newPage();
    const errors = [];
    page.on("pageerror", (e) => errors.push(String(e)));
    await page.goto(adminUrl, { waitUntil: "load" });

    const clientId = "dashboard-" + process.pid;
    const client = mqtt.connect(mqttUrl, { clientId, protocolVersion: 5 });
    await new Promise((resolve, reject) => {
      client.once("connect", resolve);
      client.once("error", reject);
    });
    await new Promise((resolve, reject) =>
      client.subscribe("dash/#", { qos: 0 }, (e) => (e ? reject(e) : resolve())));

    // The client shows up in the list.
    await page.waitForSelector(`tr[data-clientid="${clientId}"]`, { timeout: 10000 });
    const connections = await page.textContent("#connections");
    if (Number(connections) < 1) fail("connections card shows " + connections);

    // Publishing moves the counter and the plot.
    const canvasBefore = await page.evaluate(() => document.getElementById("plot").toDataURL());
    const receivedBefore = Number(await page.evaluate(() => document.body.dataset.received || 0));
    for (let i = 0; i < 50; i++) client.publish("dash/t", "m" + i, { qos: 0 });
    await page.waitForFunction(
      (before) => Number(document.body.dataset.received || 0) >= before + 50,
      receivedBefore, { timeout: 10000 });
    await page.waitForFunction(() => Number(document.getElementById("rate-in").textContent) > 0,
      null, { timeout: 10000 });
    const canvasAfter = await page.evaluate(() => document.getElementById("plot").toDataURL());
    if (canvasAfter === canvasBefore) fail("the plot did not change");

    if (quicClientId) {
      const row = `tr[data-clientid="${quicClientId}"]`;
      await page.waitForSelector(row, { timeout: 10000 });
      const cells = await page.$$eval(`${row} td`, (tds) => tds.map((td) => td.textContent));
      const [rtt, , migrations, streams] = cells.slice(-4);
      if (!(Number(rtt) > 0) || migrations !== "0" || streams !== "1 / 0 / 0 / 0") {
        fail("the QUIC client's row shows " + JSON.stringify(cells));
      }
    }

    await page.screenshot({ path: screenshot, fullPage: true });
    client.end(true);
    if (errors.length) fail("page errors: " + errors.join("; "));
    const rateIn = await page.textContent("#rate-in");
    console.log(JSON.stringify({ ok: true, clientId, rateIn, screenshot }));
  } finally {
    await context.close();
    fs.rmSync(profile, { recursive: true, force: true });
  }
}

main().catch((e) => fail(e && e.stack ? e.stack : String(e)));
