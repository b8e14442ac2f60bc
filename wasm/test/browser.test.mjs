// Browser tests of the tinysse client: Debian's chromium, driven by
// playwright-core (never a downloaded browser), loads tinysse.js and the demo
// page from the real build/tinysse running wasm/test/browser.lua. A small
// node server stands in for a hung or misbehaving gateway where the real one
// cannot be made to misbehave. Every wait is bounded; run by ctest
// (wasm_browser) or `node wasm/test/browser.test.mjs` from the top directory.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { mkdtempSync, mkdirSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import os from "node:os";
import path from "node:path";
import { chromium, root, SCRIPT, CHROMIUM, CHROMIUM_FLAGS, WAIT, sleep, freePort, timeLimit, Gateway as Gw }
  from "./support.mjs";

const ARTIFACTS = process.env.TINYSSE_ARTIFACTS || path.join(root, "build/wasm-artifacts");
const KEY = "browser-test-publish-key";
timeLimit("browser tests", 240000);

// The gateway of these tests: the publish key KEY.
class Gateway extends Gw {
  constructor(port, extra = [], script) {
    super(port, KEY, extra, script);
  }

  // POST /subscriptions with the publish key: [status, body].
  async subscribe(body) {
    const r = await fetch(`${this.url}/subscriptions`, {
      method: "POST", headers: { Authorization: `Bearer ${KEY}` }, body: JSON.stringify(body) });
    return [r.status, await r.json()];
  }
}

let context, profile;

before(async () => {
  profile = mkdtempSync(path.join(os.tmpdir(), "tinysse-chromium-"));
  mkdirSync(ARTIFACTS, { recursive: true });
  context = await chromium.launchPersistentContext(profile, {
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60000,
    args: CHROMIUM_FLAGS,
  });
});

after(async () => {
  await context?.close();
  rmSync(profile, { recursive: true, force: true });
});

// A page on the gateway's origin that logs every page error to the test output.
async function openPage(gw) {
  const page = await context.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  page.eventsUrls = [];
  page.on("request", (r) => r.url().includes("/events") && page.eventsUrls.push(r.url()));
  await page.goto(`${gw.url}/demo`, { timeout: WAIT });
  return page;
}

// Starts the client in the page; window.log records every callback. The
// tokenProvider hands out opts.tokens in turn (the last one repeats);
// "THROW" makes it throw.
async function startClient(page, opts) {
  await page.evaluate(async (opts) => {
    const { connect } = await import(opts.module ?? "/tinysse.js");
    const log = (window.log = { messages: [], errors: [], resets: [], states: [], subs: [], tokenCalls: 0,
      afterClose: 0 });
    const record = (list) => (x) => (window.closed ? log.afterClose++ : list.push(x));
    window.sse = await connect({
      endpoint: opts.endpoint,
      retryInterval: 200,
      maxRetryDelay: 2000,
      connectTimeout: opts.connectTimeout ?? 5000,
      events: opts.events ?? [],
      async tokenProvider() {
        if (window.closed) log.afterClose++;
        const t = opts.tokens[Math.min(log.tokenCalls++, opts.tokens.length - 1)];
        if (t == "THROW") throw new Error("token service down");
        return t;
      },
      onMessage: record(log.messages),
      onError: (e) => record(log.errors)({ type: e.type, message: e.message, cause: e.cause && String(e.cause.message),
        reason: e.reason, retry_ms: e.retry_ms }),
      onReset: record(log.resets),
      onState: record(log.states),
      onSubscribed: record(log.subs),
    });
  }, opts);
}

const getLog = (page) => page.evaluate(() => window.log);

async function waitLog(page, cond, what, arg) {
  try {
    await page.waitForFunction(cond, arg, { timeout: WAIT, polling: 50 });
  } catch (e) {
    throw new Error(`timed out waiting for ${what}; log: ${JSON.stringify(await getLog(page))}`);
  }
}

async function withGateway(fn, extra, script) {
  const gw = await new Gateway(await freePort(), extra, script).start();
  try {
    await fn(gw);
  } catch (e) {
    console.error("gateway log:", gw.log);
    throw e;
  } finally {
    await gw.stop("SIGKILL");
  }
}

test("messages arrive with id, handler_id, data and event", { timeout: 60000 }, () =>
  withGateway(async (gw) => {
    const page = await openPage(gw);
    await startClient(page, { tokens: ["alice:admin"], events: ["custom.event"] });
    await waitLog(page, () => window.log.states.at(-1) == "open", "open");
    const nested = { text: "h\u00e9llo \ud83d\ude00", list: [1, 2.5, { s: "}{\"]\\", n: null }], t: true };
    const ids = [
      await gw.publish({ targets: ["all"], handler_id: 7, data: nested }),
      await gw.publish({ targets: ["role:admin"], handler_id: 0, data: "plain", event: "custom.event" }),
    ];
    await gw.publish({ targets: ["user:bob"], handler_id: 1, data: "not for alice" });
    ids.push(await gw.publish('{\n  "multi": "line",\n  "big": 1\n}', "?targets=user:alice&handler_id=255"));
    ids.push(await gw.publish({ targets: ["all", "user:alice"], handler_id: 3, data: [] }));
    await waitLog(page, () => window.log.messages.length >= 4, "4 messages");
    await sleep(200);
    const log = await getLog(page);
    assert.deepEqual(log.messages, [
      { id: ids[0], handler_id: 7, data: nested, event: "message" },
      { id: ids[1], handler_id: 0, data: "plain", event: "custom.event" },
      { id: ids[2], handler_id: 255, data: { multi: "line", big: 1 }, event: "message" },
      { id: ids[3], handler_id: 3, data: [], event: "message" },
    ]);
    assert.deepEqual(log.errors, []);
    assert.deepEqual(log.states, ["connecting", "open"]);
    assert.equal(await page.evaluate(() => window.sse.lastEventId), ids[3]);
    await page.close();
  }));

test("a token expiring mid-stream is rotated with nothing lost or doubled", { timeout: 90000 }, () =>
  withGateway(async (gw) => {
    const page = await openPage(gw);
    await startClient(page, { tokens: ["rot:admin:1.5"] });
    await waitLog(page, () => window.log.states.at(-1) == "open", "open");
    // A numbered sequence, until 10 past the second rotation (at most 400).
    let N = 0, rotated = 0;
    while (N < 400 && !(rotated && N >= rotated + 10)) {
      await gw.publish({ targets: ["user:rot"], handler_id: 1, data: { n: ++N } });
      await sleep(40);
      if (!rotated && N % 5 == 0 && (await page.evaluate(() => window.log.tokenCalls)) >= 3) rotated = N;
    }
    await waitLog(page, (n) => window.log.messages.length >= n, `${N} messages`, N);
    await sleep(500); // room for a duplicate to show up
    const log = await getLog(page);
    assert.deepEqual(log.messages.map((m) => m.data.n), Array.from({ length: N }, (_, i) => i + 1));
    assert.ok(log.tokenCalls >= 3, `tokenProvider called ${log.tokenCalls} times; states ${log.states}; ` +
      `streams:\n${page.eventsUrls.join("\n")}`);
    assert.deepEqual(log.errors, []);
    // Each rotation reconnects with ?token= and the last id delivered.
    const resumed = page.eventsUrls.slice(1).map((u) => new URL(u).searchParams);
    assert.ok(resumed.length >= 2 && resumed.every((q) => q.get("token") && q.get("lastEventId")),
      page.eventsUrls.join("\n"));
    await page.evaluate(() => window.sse.close());
    await page.close();
  }));

test("a gateway restart leads to onReset, and messages go on", { timeout: 90000 }, async () => {
  const port = await freePort();
  let gw = await new Gateway(port).start();
  try {
    const page = await openPage(gw);
    await startClient(page, { tokens: ["carol:admin"] });
    await waitLog(page, () => window.log.states.at(-1) == "open", "open");
    const ids = [await gw.publish({ targets: ["all"], handler_id: 1, data: 1 })];
    await waitLog(page, () => window.log.messages.length == 1, "message 1");
    // A graceful restart (tinysse.shutdown, then close), then a crash.
    for (const [signal, n] of [["SIGTERM", 2], ["SIGKILL", 3]]) {
      await gw.stop(signal);
      await waitLog(page, () => window.log.states.at(-1) == "connecting", "the outage");
      gw = await new Gateway(port).start();
      await waitLog(page, (n) => window.log.resets.length == n - 1 && window.log.states.at(-1) == "open",
        `reset ${n - 1}`, n);
      ids.push(await gw.publish({ targets: ["all"], handler_id: 1, data: n }));
      await waitLog(page, (n) => window.log.messages.length == n, `message ${n}`, n);
    }
    const log = await getLog(page);
    assert.deepEqual(log.messages.map((m) => m.id), ids);
    assert.deepEqual(log.messages.map((m) => m.data), [1, 2, 3]);
    assert.equal(new Set(ids.map((id) => id.split("-")[0])).size, 3, "three gateway runs");
    assert.deepEqual(log.resets.map((r) => [r.type, r.reason]), [["reset", "unknown"], ["reset", "unknown"]]);
    assert.ok(log.errors.length >= 2 && log.errors.every((e) => e.type == "connect"), JSON.stringify(log.errors));
    await page.close();
  } catch (e) {
    console.error("gateway log:", gw.log);
    throw e;
  } finally {
    await gw.stop("SIGKILL");
  }
});

test("a 401 or a failing tokenProvider leads to tokenProvider being asked again", { timeout: 60000 }, () =>
  withGateway(async (gw) => {
    const page = await openPage(gw);
    await startClient(page, { tokens: ["not a valid token!", "THROW", "dave:admin"] });
    await waitLog(page, () => window.log.states.at(-1) == "open", "open");
    const id = await gw.publish({ targets: ["user:dave"], handler_id: 2, data: "after auth" });
    await waitLog(page, () => window.log.messages.length == 1, "the message");
    const log = await getLog(page);
    assert.equal(log.tokenCalls, 3);
    assert.deepEqual(log.errors.map((e) => [e.type, e.cause]), [["auth", undefined], ["auth", "token service down"]]);
    assert.match(log.errors[0].message, /refused/);
    assert.equal(log.messages[0].id, id);
    assert.equal(new URL(page.eventsUrls.at(-1)).searchParams.get("token"), "dave:admin");
    await page.close();
  }));

test("close() stops the stream, the timers and every callback", { timeout: 60000 }, () =>
  withGateway(async (gw) => {
    const page = await openPage(gw);
    // Count the page's pending timers.
    await page.evaluate(() => {
      const pending = (window.pendingTimers = new Set());
      const { setTimeout: set, clearTimeout: clear } = window;
      window.setTimeout = (f, ms, ...a) => {
        const id = set(() => { pending.delete(id); f(...a); }, ms);
        pending.add(id);
        return id;
      };
      window.clearTimeout = (id) => { pending.delete(id); clear(id); };
    });
    await startClient(page, { tokens: ["erin:admin"] });
    await waitLog(page, () => window.log.states.at(-1) == "open", "open");
    assert.equal(await gw.connections(), 1);
    await page.evaluate(() => { window.closed = true; window.sse.close(); });
    await gw.publish({ targets: ["all"], handler_id: 1, data: "after close" });
    for (const end = Date.now() + WAIT; (await gw.connections()) != 0 && Date.now() < end; ) await sleep(50);
    assert.equal(await gw.connections(), 0, "the gateway still holds the stream");

    // Closing while backing off from a tokenProvider that keeps failing.
    await startClient(page, { tokens: ["THROW"] });
    await waitLog(page, () => window.log.errors.length >= 2, "two provider failures");
    await page.evaluate(() => { window.closed = true; window.sse.close(); });
    await sleep(1500); // several backoff periods
    const log = await getLog(page);
    assert.equal(log.afterClose, 0);
    assert.equal(await page.evaluate(() => window.sse.state), "closed");
    assert.equal(await page.evaluate(() => window.pendingTimers.size), 0);
    await page.close();
  }));

test("a shed stream keeps retrying, reports busy, and gets in once max_clients is raised", { timeout: 60000 }, async () => {
  // browser.lua with max_clients in its config table, where SIGHUP can change it.
  const dir = mkdtempSync(path.join(os.tmpdir(), "tinysse-busy-"));
  const script = path.join(dir, "busy.lua");
  const limit = (n) => writeFileSync(script, readFileSync(SCRIPT, "utf8").replace("local M = {}",
    `local M = { config = { max_clients = ${n}, busy_retry_min = 200, busy_retry_max = 400 } }`));
  limit(1);
  const hold = new AbortController();
  try {
    await withGateway(async (gw) => {
      // Another stream takes the one place.
      const held = await fetch(`${gw.url}/events?token=holder:user`, { signal: hold.signal });
      assert.equal(held.status, 200);
      for (const end = Date.now() + WAIT; (await gw.connections()) != 1 && Date.now() < end; ) await sleep(50);
      assert.equal(await gw.connections(), 1);

      const page = await openPage(gw);
      await startClient(page, { tokens: ["gina:admin"] });
      await waitLog(page, () => window.log.errors.length >= 3, "three busy answers");
      let log = await getLog(page);
      assert.ok(log.errors.every((e) => e.type == "busy" && e.reason == "max_clients" &&
        e.retry_ms >= 200 && e.retry_ms <= 400 && /shed/.test(e.message)), JSON.stringify(log.errors));

      limit(100);
      gw.proc.kill("SIGHUP");
      for (const end = Date.now() + WAIT; (await gw.connections()) != 2 && Date.now() < end; ) await sleep(50);
      assert.equal(await gw.connections(), 2, `not let in after SIGHUP: ${JSON.stringify(await getLog(page))}`);
      await waitLog(page, () => window.log.states.at(-1) == "open", "open");
      const id = await gw.publish({ targets: ["user:gina"], handler_id: 5, data: "let in" });
      await waitLog(page, () => window.log.messages.length == 1, "the message");
      log = await getLog(page);
      assert.deepEqual(log.messages, [{ id, handler_id: 5, data: "let in", event: "message" }]);
      // The browser's own retries did it all: one token, no backoff of the
      // client's, and one busy report per shed answer.
      assert.equal(log.tokenCalls, 1);
      assert.ok(log.errors.every((e) => e.type == "busy"), JSON.stringify(log.errors));
      assert.ok(!log.states.includes("backoff") && !log.states.includes("closed"), log.states.join());
      assert.equal(log.errors.length, page.eventsUrls.length - 1, page.eventsUrls.join("\n"));
      await page.close();
    }, [], script);
  } finally {
    hold.abort();
    rmSync(dir, { recursive: true, force: true });
  }
});

// A stand-in gateway on another origin: /hang never answers; /bad sends
// malformed envelopes and, when the browser retries, replays what it sent;
// /subs sends tinysse.subscribed events; /page is an app page of that other origin.
async function fakeGateway() {
  const sockets = new Set();
  const server = http.createServer((req, res) => {
    if (req.url.startsWith("/hang")) return; // never answered
    if (req.url.startsWith("/page")) return res.end("<!doctype html><title>another origin</title>");
    res.writeHead(200, { "Content-Type": "text/event-stream", "Access-Control-Allow-Origin": "*" });
    const ev = (id, data) => `${id ? `id: ${id}\n` : ""}data: ${data}\n\n`;
    const env = (id, h, data) => ev(id, JSON.stringify({ id, handler_id: h, data }));
    // tinysse.subscribed bodies, malformed and not, then a message; held open.
    if (req.url.startsWith("/subs")) {
      const sub = (data) => `event: tinysse.subscribed\ndata: ${data}\n\n`;
      return res.write(sub("{not json") + sub("5") + sub('{"type":"reset","subscribed":1}') + sub("null") +
        sub('{"type":"subscribed","subscribed":1,"unsubscribed":0,"data":"ok"}') + env("1-1", 1, "after"));
    }
    if (!req.headers["last-event-id"]) {
      res.end("retry: 100\n\n" + env("1-1", 1, { ok: 1 }) + ev("", "{not json") +
        ev("1-2", '{"id":"1-2","handler_id":300,"data":1}') + env("1-1", 1, "again") +
        env("1-3", 2, [1, { "}": "{" }]));
    } else {
      res.write(env("1-1", 1, "replayed") + env("1-3", 2, "replayed") + env("1-4", 4, "new"));
    }
  });
  server.on("connection", (s) => { sockets.add(s); s.on("close", () => sockets.delete(s)); });
  await new Promise((r) => server.listen(0, "127.0.0.1", r));
  return {
    url: `http://127.0.0.1:${server.address().port}`,
    close: () => { sockets.forEach((s) => s.destroy()); return new Promise((r) => server.close(r)); },
  };
}

test("malformed envelopes are parse errors, repeats are dropped, no open is a timeout", { timeout: 60000 }, () =>
  withGateway(async (gw) => {
    const fake = await fakeGateway();
    try {
      const page = await openPage(gw);
      await startClient(page, { tokens: ["x:y"], endpoint: `${fake.url}/bad` });
      await waitLog(page, () => window.log.messages.length >= 3, "3 messages");
      await sleep(300);
      let log = await getLog(page);
      assert.deepEqual(log.messages.map((m) => [m.id, m.handler_id]), [["1-1", 1], ["1-3", 2], ["1-4", 4]]);
      assert.deepEqual(log.messages[1].data, [1, { "}": "{" }]);
      assert.deepEqual(log.errors.map((e) => [e.type, e.message]),
        [["parse", "envelope is not JSON"], ["parse", "bad or missing handler_id"], ["connect", log.errors[2]?.message]]);
      await page.evaluate(() => window.sse.close());

      await startClient(page, { tokens: ["x:y"], endpoint: `${fake.url}/hang`, connectTimeout: 400 });
      await waitLog(page, () => window.log.errors.length >= 1, "the timeout");
      log = await getLog(page);
      assert.equal(log.errors[0].type, "timeout");
      assert.deepEqual(log.states.slice(0, 2), ["connecting", "backoff"]);
      await page.evaluate(() => window.sse.close());
      await page.close();
    } finally {
      await fake.close();
    }
  }));

test("tinysse.subscribed reaches onSubscribed; malformed ones are ignored", { timeout: 60000 }, () =>
  withGateway(async (gw) => {
    const page = await openPage(gw);
    await startClient(page, { tokens: ["ivy:admin"] });
    await waitLog(page, () => window.log.states.at(-1) == "open", "open");
    const why = { room: "r1", why: "invited", list: [1, "\u00e9"] };
    assert.deepEqual(await gw.subscribe({ user: "ivy", subscribe: ["room:r1", "room:r2"], data: why }),
      [200, { streams: 1 }]);
    await waitLog(page, () => window.log.subs.length >= 1, "onSubscribed");
    // Another user's change is not this stream's.
    assert.deepEqual(await gw.subscribe({ user: "zed", subscribe: ["room:r1"], data: 1 }), [200, { streams: 0 }]);
    const id = await gw.publish({ targets: ["room:r2"], handler_id: 2, data: "in r2" });
    assert.deepEqual(await gw.subscribe({ user: "ivy", unsubscribe: ["room:r1"] }), [200, { streams: 1 }]);
    await waitLog(page, () => window.log.subs.length >= 2 && window.log.messages.length >= 1, "2 onSubscribed");
    await sleep(300); // room for a repeat to show up
    let log = await getLog(page);
    assert.deepEqual(log.subs, [
      { subscribed: 2, unsubscribed: 0, data: why },
      { subscribed: 0, unsubscribed: 1, data: null },
    ]);
    assert.deepEqual(log.messages, [{ id, handler_id: 2, data: "in r2", event: "message" }]);
    assert.deepEqual(log.errors, []);
    assert.deepEqual(log.resets, []);
    await page.evaluate(() => window.sse.close());

    // Bodies that are not a subscribed object are skipped, with no callback.
    const fake = await fakeGateway();
    try {
      await startClient(page, { tokens: ["x:y"], endpoint: `${fake.url}/subs` });
      await waitLog(page, () => window.log.messages.length >= 1, "the message after the events");
      await sleep(200);
      log = await getLog(page);
      assert.deepEqual(log.subs, [{ subscribed: 1, unsubscribed: 0, data: "ok" }]);
      assert.deepEqual(log.errors, []);
      await page.evaluate(() => window.sse.close());
    } finally {
      await fake.close();
    }
    await page.close();
  }, ["--subscribed-event"]));

test("a page on another origin uses the client with --cors-origin", { timeout: 60000 }, async () => {
  const fake = await fakeGateway();
  try {
    await withGateway(async (gw) => {
      const page = await context.newPage();
      page.on("pageerror", (e) => console.error("page error:", e.message));
      await page.goto(`${fake.url}/page`, { timeout: WAIT });
      await startClient(page, { tokens: ["frank:admin"], module: `${gw.url}/tinysse.js`, endpoint: `${gw.url}/events` });
      await waitLog(page, () => window.log.states.at(-1) == "open", "open");
      const id = await gw.publish({ targets: ["user:frank"], handler_id: 9, data: { cross: "origin" } });
      await waitLog(page, () => window.log.messages.length == 1, "the message");
      assert.deepEqual((await getLog(page)).messages,
        [{ id, handler_id: 9, data: { cross: "origin" }, event: "message" }]);
      await page.close();
    }, ["--cors-origin", fake.url]);
  } finally {
    await fake.close();
  }
});

test("the demo page connects, shows the state and publishes", { timeout: 60000 }, () =>
  withGateway(async (gw) => {
    const page = await openPage(gw);
    await page.setViewportSize({ width: 900, height: 760 });
    await page.fill("#key", KEY);
    await page.click("#connect");
    await page.waitForFunction(() => document.querySelector("#state").textContent == "open", null, { timeout: WAIT });
    await page.fill("#data", '{"text": "hello from the browser test"}');
    await page.click("#send");
    await page.waitForFunction(() => /^published \d+-\d+$/.test(document.querySelector("#published").textContent),
      null, { timeout: WAIT });
    await page.waitForFunction(
      () => [...document.querySelectorAll("#messages li")].some((li) => li.textContent.includes("hello from the browser test")),
      null, { timeout: WAIT });
    const shot = path.join(ARTIFACTS, "demo.png");
    await page.screenshot({ path: shot, fullPage: true });
    console.log(`screenshot: ${shot}`);
    await page.close();
  }));
