// The status page's charts in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core from wasm/node_modules): a gateway runs a load
// for about 20 s (streams opening, publishes at a varying rate, script
// errors, one stream that stops reading and is closed as slow) before the
// page is opened, so what the charts draw at first comes from the history
// the gateway remembers; then they update live, and a reload draws the
// history again. A screenshot is kept in build/status-artifacts/
// (status-charts.png; docs/status-page.png is one of them).
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, mkdirSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const require = createRequire(path.join(root, "wasm/package.json"));
const { chromium } = require("playwright-core");
const BIN = process.env.TINYSSE_BIN || path.join(root, "build/tinysse");
const ARTIFACTS = process.env.TINYSSE_ARTIFACTS || path.join(root, "build/status-artifacts");
const KEY = "status-charts-test-publish-key";
const WAIT = 15000;
const LOAD_SECONDS = Number(process.env.TINYSSE_LOAD_SECONDS || 20);

let gw, context, profile, load;
setTimeout(() => { console.error("status charts test: time limit"); process.exit(1); }, 170000).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
  s.on("error", reject);
});

// A raw stream: reads and drops everything, or (reading: false) reads
// nothing at all once opened, so its queue grows until it is closed as slow.
function openStream(port, token, reading = true) {
  const sock = net.connect(port, "127.0.0.1");
  sock.on("error", () => {});
  sock.write(`GET /events?token=${encodeURIComponent(token)} HTTP/1.1\r\nHost: 127.0.0.1\r\n` +
    "Accept: text/event-stream\r\n\r\n");
  if (reading) sock.resume();
  return sock;
}

const publish = (data, targets = ["all"]) => fetch(`${gw.url}/publish`, {
  method: "POST", headers: { Authorization: `Bearer ${KEY}` },
  body: JSON.stringify({ targets, handler_id: 0, data }),
}).then((r) => { r.body?.cancel(); return r.status; });

// The load: streams opened over the run (3, then up to 12, a few closing),
// publishes to "all" at 5..40 a second in waves, a script error every 4 s,
// and a stream that never reads, sent more big messages than its socket and
// --max-queue hold, so the gateway closes it as slow.
function startLoad(port) {
  const streams = [];
  let stop = false, published = 0, failed = 0;
  const t0 = Date.now();
  for (let i = 0; i < 3; i++) streams.push(openStream(port, `u${i}:user`));
  const done = (async () => {
    let slowpoke = null, lastError = 0, tick = 0, big = 0;
    while (!stop) {
      const t = (Date.now() - t0) / 1000;
      if (tick % 10 === 0) {
        const want = Math.min(12, 3 + Math.floor(t / 2));
        while (streams.length < want) streams.push(openStream(port, `u${streams.length}:user`));
        if (t > 14 && streams.length > 8 && tick % 40 === 0) streams.shift().destroy();
      }
      if (t - lastError >= 4) {
        lastError = t;
        fetch(`${gw.url}/events?token=boom`).then((r) => r.body?.cancel()).catch(() => {});
      }
      // ~15 MB in 5 s: more than the loopback socket's buffers and --max-queue hold
      if (t > 6 && !slowpoke) slowpoke = openStream(port, "slowpoke:user", false);
      if (slowpoke && t > 7 && big < 50 && ++big)
        publish("x".repeat(300000), ["user:slowpoke"]).catch(() => {});
      const rate = 22 + 18 * Math.sin(t / 3); // publishes a second
      const batch = Math.max(1, Math.round(rate / 10));
      for (let i = 0; i < batch; i++)
        publish({ n: published, t }).then((s) => { if (s === 200) published++; else failed++; }, () => failed++);
      tick++;
      await sleep(100);
    }
  })();
  return {
    async end() {
      stop = true;
      await done;
      for (const s of streams) s.destroy();
      return { published, failed };
    },
  };
}

before(async () => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = spawn(BIN, ["--listen", `127.0.0.1:${port}`, "--script",
    path.join(root, "spec/e2e/scripts/test.lua"), "--workers", "2", "--publish-key", KEY,
    "--max-queue", "262144"],
    { stdio: ["ignore", "ignore", "inherit"] });
  process.on("exit", () => proc.kill("SIGKILL"));
  for (const end = Date.now() + WAIT; ; await sleep(50)) {
    try { if ((await fetch(`${url}/healthz`)).ok) break; } catch {}
    if (Date.now() > end || proc.exitCode !== null) throw new Error("gateway did not start");
  }
  gw = { url, proc, port };
  profile = mkdtempSync(path.join(os.tmpdir(), "tinysse-status-charts-"));
  mkdirSync(ARTIFACTS, { recursive: true });
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.TINYSSE_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    viewport: { width: 1100, height: 900 },
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
});

after(async () => {
  await load?.end();
  await context?.close();
  if (profile) rmSync(profile, { recursive: true, force: true });
  gw?.proc.kill("SIGTERM");
});

// What each chart's polylines hold: points, the largest value, and how many
// points are above the baseline.
const readCharts = (page) => page.evaluate(() => {
  const out = {};
  for (const el of document.querySelectorAll("polyline[data-series]")) {
    const pts = (el.getAttribute("points") || "").trim().split(/\s+/).filter(Boolean)
      .map((p) => p.split(",").map(Number));
    out[el.dataset.series] = { n: pts.length, max: Number(el.dataset.max || 0),
      raised: pts.filter(([, y]) => y < 99.9).length, span: pts.length ? pts[pts.length - 1][0] - pts[0][0] : 0 };
  }
  return out;
});

test("the status page draws the last minutes from the gateway's history, live and after a reload", async () => {
  load = startLoad(gw.port);
  await sleep(LOAD_SECONDS * 1000);

  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(`${gw.url}/status`, { timeout: WAIT });
  // nothing is drawn before the page is let in
  assert.equal((await readCharts(page)).publishes.n, 0);
  await page.fill("#key", KEY);
  await page.click("button");
  await page.waitForFunction(() => document.getElementById("state").textContent === "live", null, { timeout: WAIT });

  // the first event brings the history: ~LOAD_SECONDS samples at once, and rates at once
  await page.waitForFunction(() => Number(document.querySelector('[data-series="publishes"]').dataset.n) >= 10,
    null, { timeout: 3000 });
  let c = await readCharts(page);
  console.log("after connecting:", JSON.stringify(c));
  const min = LOAD_SECONDS - 6;
  for (const s of ["streams", "publishes", "deliveries"]) {
    assert.ok(c[s].n >= min, `${s}: ${c[s].n} points, want >= ${min}`);
    assert.ok(c[s].max > 0 && c[s].raised >= min / 2, `${s}: values ${JSON.stringify(c[s])}`);
  }
  assert.ok(c.streams.max >= 8, `streams peaked at ${c.streams.max}`);
  // x is 0..600 across the time drawn (a minute here): the samples spread over the load's time
  assert.ok(c.publishes.span > 600 * (LOAD_SECONDS / 2) / 60, "the history is spread in time, not drawn at one instant");
  assert.ok(c.errors.max >= 1, "script errors are charted");
  assert.notEqual(await page.textContent("#pubrate"), "–");
  assert.ok(Number(await page.textContent("#delrate")) > 0);

  // then it updates live, one point per status event
  const before = c.publishes.n;
  await page.waitForFunction((n) => Number(document.querySelector('[data-series="publishes"]').dataset.n) >= n + 3,
    before, { timeout: WAIT });

  // a reload draws what the gateway remembers again, not an empty page
  await page.reload({ timeout: WAIT });
  await page.waitForFunction(() => document.getElementById("state").textContent === "live", null, { timeout: WAIT });
  await page.waitForFunction((n) => Number(document.querySelector('[data-series="publishes"]').dataset.n) >= n,
    before + 2, { timeout: 3000 });
  c = await readCharts(page);
  console.log("after the reload:", JSON.stringify(c));
  assert.ok(c.publishes.n >= before + 2 && c.deliveries.raised >= min / 2);
  assert.notEqual(await page.textContent("#pubrate"), "–");
  if (c.slow.max < 1) console.log("note: no slow disconnect was charted in this run");

  await sleep(1500);
  const shot = path.join(ARTIFACTS, "status-charts.png");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
  const { published, failed } = await load.end();
  load = null;
  console.log(`load: ${published} publishes answered 200, ${failed} not`);
  assert.ok(published > 200);
  assert.deepEqual(pageErrors, []);
});
