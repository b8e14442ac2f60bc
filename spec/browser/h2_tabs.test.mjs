// The browser limit HTTP/2 removes (issue 14), shown in headless Chromium
// (Debian's /usr/bin/chromium driven by playwright-core from wasm/node_modules):
// 20 pages (tabs) of one origin in one browser context, each with its own
// EventSource, against the gateway with native TLS. Over HTTP/2 all 20
// receive every message on ONE TCP connection; with --no-http2 (ALPN offers
// http/1.1 only) the browser's 6-connections-per-origin limit leaves pages
// 7..20 without a stream. Publishing goes through a --plain-listen port. Both
// runs are printed side by side. Closing half the HTTP/2 tabs ends just
// their streams; the rest keep receiving on the same connection.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { createRequire } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { CHROMIUM_ARGS, establishedTo, freePort, makeCert } from "./tls_support.mjs";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const require = createRequire(path.join(root, "wasm/package.json"));
const { chromium } = require("playwright-core");
const BIN = process.env.TINYSSE_BIN || path.join(root, "build/tinysse");
// Gives every "user:role" token the channels all, role:ROLE and user:USER.
const SCRIPT = path.join(root, "spec/e2e/scripts/test.lua");
const KEY = "h2-tabs-test-publish-key";
const PAGES = 20, H1_LIMIT = 6, MESSAGES = 3;
const WAIT = 15000, QUIET = 3000;

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const children = new Set();
process.on("exit", () => children.forEach((c) => c.kill("SIGKILL")));
setTimeout(() => { console.error("h2 tabs test: time limit"); process.exit(1); }, 150000).unref();

let dir, tls, browser;
const results = {};

before(async () => {
  dir = mkdtempSync(path.join(os.tmpdir(), "tinysse-h2tabs-"));
  tls = makeCert(dir);
  browser = await chromium.launch({
    executablePath: process.env.TINYSSE_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    timeout: 60000,
    // Same-site pages may share renderers: fewer processes, the same socket pools.
    args: [...CHROMIUM_ARGS, "--renderer-process-limit=4"],
  });
});

after(async () => {
  await browser?.close();
  children.forEach((c) => c.kill("SIGKILL"));
  if (dir) rmSync(dir, { recursive: true, force: true });
});

// The gateway: TLS on `port` (all of the browser's traffic), plain HTTP on
// `plain` (health, metrics and publishing from this test).
async function startGateway(extra) {
  const port = await freePort();
  let plain = await freePort();
  while (plain == port) plain = await freePort();
  const args = ["--listen", `127.0.0.1:${port}`, "--tls-cert", tls.cert, "--tls-key", tls.key,
    "--plain-listen", `127.0.0.1:${plain}`, "--script", SCRIPT, "--workers", "1", "--publish-key", KEY,
    "--log-level", "warn", ...extra];
  const proc = spawn(BIN, args, { stdio: ["ignore", "ignore", "pipe"] });
  children.add(proc);
  const gw = { port, proc, origin: `https://127.0.0.1:${port}`, plain: `http://127.0.0.1:${plain}`, log: "" };
  proc.stderr.on("data", (d) => (gw.log = (gw.log + d).slice(-4000)));
  gw.exited = new Promise((r) => proc.on("exit", r)).then(() => children.delete(proc));
  for (const end = Date.now() + WAIT; ; await sleep(50)) {
    try { if ((await fetch(`${gw.plain}/healthz`)).ok) return gw; } catch {}
    if (Date.now() > end || proc.exitCode !== null) throw new Error(`gateway did not start: ${gw.log}`);
  }
}

async function stopGateway(gw) {
  if (gw.proc.exitCode !== null) return;
  gw.proc.kill("SIGTERM");
  const t = setTimeout(() => gw.proc.kill("SIGKILL"), 5000);
  await gw.exited;
  clearTimeout(t);
}

// Open streams, from the gateway's own Prometheus text.
async function gatewayStreams(gw) {
  const text = await (await fetch(`${gw.plain}/metrics`)).text();
  return text.split("\n").filter((l) => /^tinysse_connections\{/.test(l))
    .reduce((n, l) => n + Number(l.trim().split(/\s+/).pop()), 0);
}

async function publish(gw, data) {
  const r = await fetch(`${gw.plain}/publish`, { method: "POST", headers: { Authorization: `Bearer ${KEY}` },
    body: JSON.stringify({ targets: ["all"], handler_id: 1, data }) });
  const answer = await r.json();
  assert.equal(r.status, 200, JSON.stringify(answer));
  return answer.id;
}

// One run: 20 pages of the gateway's origin in one fresh context, each with
// its own EventSource; returns what each page saw and what the gateway and
// the kernel saw.
async function run(label, extra, expectOpen) {
  const gw = await startGateway(extra);
  const context = await browser.newContext({ ignoreHTTPSErrors: true });
  try {
    const pages = [];
    const pageErrors = [];
    // Every page is loaded before any stream exists: with HTTP/1.1 a page
    // opened after the 6th stream could not even load.
    for (let i = 0; i < PAGES; i++) {
      const page = await context.newPage();
      page.on("pageerror", (e) => pageErrors.push(`page ${i + 1}: ${e.message}`));
      await page.goto(`${gw.origin}/healthz`, { timeout: WAIT });
      pages.push(page);
    }
    const navProtocol = await pages[0].evaluate(() => performance.getEntriesByType("navigation")[0].nextHopProtocol);
    // The streams, one page after the other; each of the first `expectOpen`
    // is given time to open before the next is made, so which pages hold
    // the connections does not depend on a race. (Every wait below shares
    // one deadline per phase, so a failing run stays short.)
    const opening = Date.now() + WAIT;
    for (let i = 0; i < PAGES; i++) {
      await pages[i].evaluate((n) => {
        window.got = [];
        window.es = new EventSource(`/events?token=tab${n}:user`);
        window.es.onmessage = (e) => window.got.push(JSON.parse(e.data).id);
      }, i + 1);
      if (i < expectOpen) {
        await pages[i].waitForFunction(() => window.es.readyState == 1, null,
          { timeout: Math.max(opening - Date.now(), 100), polling: 50 }).catch(() => {});
      }
    }
    // Let anything that could still connect do so.
    for (const end = Date.now() + WAIT; Date.now() < end && (await gatewayStreams(gw)) < expectOpen; ) await sleep(100);
    await sleep(500);
    const ids = [];
    for (let m = 0; m < MESSAGES; m++) ids.push(await publish(gw, { n: m + 1, label }));
    // Every page that has a stream gets them quickly; the others get QUIET to show they never do.
    const deadline = Date.now() + WAIT;
    for (let i = 0; i < PAGES; i++) {
      if (i < expectOpen) {
        const left = Math.max(deadline - Date.now(), 100);
        await pages[i].waitForFunction((k) => window.got.length >= k, MESSAGES, { timeout: left, polling: 50 })
          .catch(() => {});
      }
    }
    await sleep(QUIET);
    const seen = [];
    for (const page of pages) seen.push(await page.evaluate(() => ({ got: window.got, state: window.es.readyState })));
    const r = {
      label, protocol: navProtocol, ids, pageErrors,
      perPage: seen.map((s) => s.got.length),
      states: seen.map((s) => s.state),
      complete: seen.filter((s) => JSON.stringify(s.got) == JSON.stringify(ids)).length,
      nothing: seen.filter((s) => s.got.length == 0).length,
      open: seen.filter((s) => s.state == 1).length,
      streams: await gatewayStreams(gw),
      tcp: establishedTo(gw.port),
      seen,
    };
    if (expectOpen == PAGES) {
      // Closing half the tabs ends their streams (RST_STREAM) and nothing
      // else: the other half keep receiving on the same connection.
      for (const page of pages.splice(PAGES / 2)) await page.close();
      for (const end = Date.now() + WAIT; Date.now() < end && (await gatewayStreams(gw)) > PAGES / 2; ) await sleep(100);
      r.streamsAfterClose = await gatewayStreams(gw);
      const id = await publish(gw, { n: MESSAGES + 1, label });
      const end = Date.now() + WAIT;
      for (const page of pages) {
        await page.waitForFunction((id) => window.got.includes(id), id,
          { timeout: Math.max(end - Date.now(), 100), polling: 50 }).catch(() => {});
      }
      r.afterClose = (await Promise.all(pages.map((p) => p.evaluate((id) => window.got.at(-1) == id, id))))
        .filter(Boolean).length;
      r.tcpAfterClose = establishedTo(gw.port);
    }
    return r;
  } finally {
    await context.close();
    await stopGateway(gw);
    if (gw.log.trim()) console.log(`${label}: the gateway logged:\n${gw.log}`);
  }
}

function table(a, b) {
  const rows = [
    ["", a.label, b.label],
    ["pages of one origin", PAGES, PAGES],
    ["protocol (nextHopProtocol)", a.protocol, b.protocol],
    ["EventSources open", a.open, b.open],
    [`pages with all ${MESSAGES} messages`, a.complete, b.complete],
    ["pages with no message", a.nothing, b.nothing],
    ["gateway streams (/metrics)", a.streams, b.streams],
    ["TCP connections to the port (ss)", a.tcp, b.tcp],
    ["messages per page", a.perPage.join(""), b.perPage.join("")],
    [`streams after closing tabs ${PAGES / 2 + 1}..${PAGES}`, a.streamsAfterClose ?? "-", b.streamsAfterClose ?? "-"],
    ["  open tabs that got the next message", a.afterClose ?? "-", b.afterClose ?? "-"],
    ["  TCP connections", a.tcpAfterClose ?? "-", b.tcpAfterClose ?? "-"],
  ];
  const w = [0, 1, 2].map((c) => Math.max(...rows.map((r) => String(r[c]).length)));
  return rows.map((r) => r.map((x, c) => String(x).padEnd(w[c])).join("  ").trimEnd()).join("\n");
}

test("20 tabs: HTTP/2 multiplexes every EventSource on one connection; HTTP/1.1 stops at 6",
  { timeout: 140000 }, async () => {
    results.h2 = await run("TLS + HTTP/2", [], PAGES);
    results.h1 = await run("TLS, --no-http2", ["--no-http2"], H1_LIMIT);
    console.log(`\n${table(results.h2, results.h1)}\n`);

    const { h2, h1 } = results;
    assert.deepEqual(h2.pageErrors, []);
    assert.deepEqual(h1.pageErrors, []);
    // HTTP/2: all 20 pages got every message, in order, over one connection.
    assert.equal(h2.protocol, "h2");
    assert.deepEqual(h2.perPage, Array(PAGES).fill(MESSAGES), "messages per page over HTTP/2");
    assert.equal(h2.complete, PAGES, "pages with every message, in order, over HTTP/2");
    assert.equal(h2.open, PAGES);
    assert.equal(h2.streams, PAGES, "the gateway's open streams over HTTP/2");
    assert.equal(h2.tcp, 1, "TCP connections the browser holds over HTTP/2");
    assert.equal(h2.streamsAfterClose, PAGES / 2, "the gateway's streams once half the tabs are closed");
    assert.equal(h2.afterClose, PAGES / 2, "open tabs that got a message published after the others closed");
    assert.equal(h2.tcpAfterClose, 1, "TCP connections once half the tabs are closed");
    // HTTP/1.1: the first 6 pages hold the browser's 6 connections; pages
    // 7..20 wait for a connection (EventSource still CONNECTING) and get nothing.
    assert.equal(h1.protocol, "http/1.1");
    assert.deepEqual(h1.perPage, [...Array(H1_LIMIT).fill(MESSAGES), ...Array(PAGES - H1_LIMIT).fill(0)],
      "messages per page over HTTP/1.1");
    assert.equal(h1.complete, H1_LIMIT);
    assert.deepEqual(h1.states, [...Array(H1_LIMIT).fill(1), ...Array(PAGES - H1_LIMIT).fill(0)],
      "EventSource readyState per page over HTTP/1.1");
    assert.equal(h1.streams, H1_LIMIT, "the gateway's open streams over HTTP/1.1");
    assert.equal(h1.tcp, H1_LIMIT, "TCP connections the browser holds over HTTP/1.1");
  });
