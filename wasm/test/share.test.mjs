// Browser tests of tab sharing (connect({share})): Debian's chromium, driven
// by playwright-core, against the real build/tinysse running
// wasm/test/browser.lua, as in browser.test.mjs. Each test has its own
// browser context, so its tabs share Web Locks and BroadcastChannel with
// each other and with nothing else. Everything talks to 127.0.0.1 only and
// every wait is bounded; run by ctest (wasm_browser_share) or
// `node wasm/test/share.test.mjs` from the top directory.
import { test, before, after } from "node:test";
import assert from "node:assert/strict";
import { chromium, CHROMIUM, CHROMIUM_FLAGS, WAIT, sleep, freePort, until, timeLimit, Gateway as Gw }
  from "./support.mjs";

const KEY = "share-test-publish-key";
timeLimit("share tests", 240000);

// The gateway of these tests (killed, not stopped, at the end of each).
class Gateway extends Gw {
  constructor(port, extra) {
    super(port, KEY, extra);
  }

  stop() {
    return super.stop("SIGKILL");
  }

  // POST /subscriptions with the publish key: [status, body].
  async subscribe(body) {
    const r = await fetch(`${this.url}/subscriptions`, {
      method: "POST", headers: { Authorization: `Bearer ${KEY}` }, body: JSON.stringify(body) });
    return [r.status, await r.json()];
  }
}

let browser;

before(async () => {
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    headless: true,
    timeout: 60000,
    args: CHROMIUM_FLAGS,
  });
});

after(async () => {
  await browser?.close();
});

// A tab of ctx on the gateway's origin running the client; window.log
// records every callback, window.sse is the connection.
async function openTab(gw, ctx, opts) {
  const page = await ctx.newPage();
  page.on("pageerror", (e) => console.error("page error:", e.message));
  page.eventsUrls = [];
  page.on("request", (r) => r.url().includes("/events") && page.eventsUrls.push(r.url()));
  await page.goto(`${gw.url}/demo`, { timeout: WAIT });
  await page.evaluate(async (opts) => {
    const { connect } = await import("/tinysse.js");
    const log = (window.log = { messages: [], errors: [], resets: [], states: [], subs: [], tokenCalls: 0,
      afterClose: 0 });
    const record = (list) => (x) => (window.closed ? log.afterClose++ : list.push(x));
    window.sse = await connect({
      share: opts.share ?? true,
      retryInterval: 200,
      maxRetryDelay: 2000,
      connectTimeout: 5000,
      async tokenProvider() {
        if (window.closed) log.afterClose++;
        log.tokenCalls++;
        return opts.token;
      },
      onMessage: record(log.messages),
      onError: (e) => record(log.errors)({ type: e.type, message: e.message }),
      onReset: record(log.resets),
      onState: record(log.states),
      onSubscribed: record(log.subs),
    });
  }, opts);
  return page;
}

const getLog = (page) => page.evaluate(() => ({ ...window.log, leader: window.sse.leader, state: window.sse.state }));

async function openTabs(gw, ctx, n, opts) {
  const tabs = [];
  for (let i = 0; i < n; i++) tabs.push(await openTab(gw, ctx, opts));
  for (const t of tabs) {
    try {
      await t.waitForFunction(() => window.sse.state == "open", null, { timeout: WAIT, polling: 50 });
    } catch {
      throw new Error(`a tab never showed open: ${JSON.stringify(await getLog(t))}`);
    }
  }
  return tabs;
}

async function leaders(tabs) {
  const flags = await Promise.all(tabs.map((t) => t.evaluate(() => window.sse.leader)));
  return tabs.filter((t, i) => flags[i]);
}

// Waits until every tab has n messages, then a little longer for a repeat to show up.
async function allGot(tabs, n) {
  for (const t of tabs) {
    try {
      await t.waitForFunction((n) => window.log.messages.length >= n, n, { timeout: WAIT, polling: 50 });
    } catch {
      const log = await getLog(t);
      throw new Error(`a tab got ${log.messages.length} of ${n} messages: ${JSON.stringify({ ...log,
        messages: log.messages.map((m) => m.data) })}`);
    }
  }
  await sleep(500);
}

async function withGateway(fn, extra) {
  const gw = await new Gateway(await freePort(), extra).start();
  const ctx = await browser.newContext();
  try {
    await fn(gw, ctx);
  } catch (e) {
    console.error("gateway log:", gw.log);
    throw e;
  } finally {
    await ctx.close();
    await gw.stop();
  }
}

// Publishes n numbered messages to user, one every `every` ms; calls
// during(i) before the i-th. Returns the ids.
async function publishMany(gw, user, n, every, during = () => {}) {
  const ids = [];
  for (let i = 1; i <= n; i++) {
    await during(i);
    ids.push(await gw.publish({ targets: [`user:${user}`], handler_id: 4, data: { n: i } }));
    await sleep(every);
  }
  return ids;
}

test("six tabs sharing one name hold one stream, and each gets every message", { timeout: 90000 }, () =>
  withGateway(async (gw, ctx) => {
    const tabs = await openTabs(gw, ctx, 6, { token: "amy:admin" });
    await sleep(500); // room for a second stream to show up
    assert.deepEqual(await gw.metrics(), { streams: 1, opened: 1, expired: 0 });
    const [leader, ...more] = await leaders(tabs);
    assert.ok(leader && more.length == 0, "exactly one leader");
    const ids = [];
    for (let i = 1; i <= 5; i++) ids.push(await gw.publish({ targets: ["user:amy"], handler_id: i, data: { n: i } }));
    await allGot(tabs, 5);
    for (const t of tabs) {
      const log = await getLog(t);
      assert.deepEqual(log.messages, ids.map((id, i) => ({ id, handler_id: i + 1, data: { n: i + 1 }, event: "message" })));
      assert.deepEqual(log.errors, []);
      assert.equal(log.tokenCalls, t == leader ? 1 : 0);
      assert.equal(t.eventsUrls.length, t == leader ? 1 : 0, "only the leader opens a stream");
      assert.equal(await t.evaluate(() => window.sse.lastEventId), ids[4]);
      // Followers start at connecting and show the leader's state.
      assert.deepEqual(log.states, ["connecting", "open"]);
    }
  }));

test("the leader tab closing mid-stream: every other tab gets every message once, in order", { timeout: 90000 }, () =>
  withGateway(async (gw, ctx) => {
    const tabs = await openTabs(gw, ctx, 6, { token: "ben:admin" });
    const [leader] = await leaders(tabs);
    const rest = tabs.filter((t) => t != leader);
    let closedAt = 0;
    const ids = await publishMany(gw, "ben", 200, 15, async (i) => {
      if (i == 60) {
        await leader.close();
        closedAt = Date.now();
      }
    });
    await allGot(rest, 200);
    for (const t of rest) {
      const log = await getLog(t);
      assert.deepEqual(log.messages.map((m) => m.id), ids);
      assert.deepEqual(log.messages.map((m) => m.data.n), ids.map((_, i) => i + 1));
      assert.deepEqual(log.errors, []);
      assert.deepEqual(log.resets, []);
    }
    const now = await leaders(rest);
    assert.equal(now.length, 1, "exactly one new leader");
    // The new leader resumed from the last id it had delivered, or earlier.
    const resumed = new URL(now[0].eventsUrls[0]).searchParams.get("lastEventId");
    assert.ok(ids.indexOf(resumed) >= 40 && ids.indexOf(resumed) < 200, `resumed from ${resumed}`);
    // One stream open; opened: the first leader's, the new leader's, and at
    // most one restream per remaining tab that reported being behind it.
    const m = await gw.metrics();
    assert.ok(m.streams == 1 && m.opened >= 2 && m.opened <= 1 + tabs.length && m.expired == 0,
      JSON.stringify(m));
    assert.ok(closedAt, "the leader was closed mid-stream");
  }));

test("a new leader takes over within about a second", { timeout: 60000 }, () =>
  withGateway(async (gw, ctx) => {
    const tabs = await openTabs(gw, ctx, 3, { token: "cy:admin" });
    const [leader] = await leaders(tabs);
    const t0 = Date.now();
    await leader.close();
    await until(async () => {
      const m = await gw.metrics();
      return m.streams == 1 && m.opened >= 2;
    }, "a new stream", 5000);
    const took = Date.now() - t0;
    console.log(`failover: new stream open ${took} ms after the leader tab closed`);
    assert.ok(took < 1500, `failover took ${took} ms`);
  }));

// Headless Chromium does not freeze a visible page (Page.setWebLifecycleState
// needs a hidden one), so a freeze is emulated: the page's own freeze event,
// then its JavaScript paused by the debugger (nothing of it runs, whatever
// reaches it waits) until the resume event.
test("a frozen leader hands the stream over and catches up when it resumes", { timeout: 90000 }, () =>
  withGateway(async (gw, ctx) => {
    const tabs = await openTabs(gw, ctx, 3, { token: "dee:admin" });
    const [leader] = await leaders(tabs);
    const rest = tabs.filter((t) => t != leader);
    const cdp = await ctx.newCDPSession(leader);
    await cdp.send("Debugger.enable");
    const ids = await publishMany(gw, "dee", 100, 15, async (i) => {
      if (i == 30) {
        await leader.evaluate(() => document.dispatchEvent(new Event("freeze")));
        await cdp.send("Debugger.pause");
      }
    });
    await allGot(rest, 100);
    assert.equal((await leaders(rest)).length, 1, "a new leader");
    await cdp.send("Debugger.resume");
    await leader.evaluate(() => document.dispatchEvent(new Event("resume")));
    await allGot([leader], 100);
    for (const t of tabs) {
      const log = await getLog(t);
      assert.deepEqual(log.messages.map((m) => m.id), ids);
      assert.deepEqual(log.errors, []);
    }
    assert.equal(await leader.evaluate(() => window.sse.leader), false, "the resumed tab follows");
    // The new leader's stream, plus a restream for each tab found behind it
    // (the resumed one needs it: what reached it while paused is lost; a slow
    // gateway, as under the sanitizers, can make one more tab's answer come
    // after the stream opened): at most one per tab, one open at the end.
    const m = await gw.metrics();
    assert.ok(m.streams == 1 && m.opened >= 2 && m.opened <= 1 + tabs.length && m.expired == 0,
      JSON.stringify(m));
  }));

// Waits until every tab has had n tinysse.subscribed events, then a little longer for a repeat.
async function allSubscribed(tabs, n) {
  for (const t of tabs) {
    try {
      await t.waitForFunction((n) => window.log.subs.length >= n, n, { timeout: WAIT, polling: 50 });
    } catch {
      throw new Error(`a tab got ${(await getLog(t)).subs.length} of ${n} onSubscribed: ${JSON.stringify(await getLog(t))}`);
    }
  }
  await sleep(500);
}

test("tinysse.subscribed reaches every sharing tab's onSubscribed once", { timeout: 60000 }, () =>
  withGateway(async (gw, ctx) => {
    const tabs = await openTabs(gw, ctx, 3, { token: "ida:admin" });
    const [leader] = await leaders(tabs);
    const rest = tabs.filter((t) => t != leader);
    const want = [
      { subscribed: 2, unsubscribed: 0, data: { room: "a", n: 1 } },
      { subscribed: 0, unsubscribed: 1, data: null },
    ];
    assert.deepEqual(await gw.subscribe({ user: "ida", subscribe: ["room:a", "room:b"], data: want[0].data }),
      [200, { streams: 1 }]);
    assert.deepEqual(await gw.subscribe({ user: "ida", unsubscribe: ["room:b"] }), [200, { streams: 1 }]);
    await allSubscribed(tabs, 2);
    for (const t of tabs) {
      const log = await getLog(t);
      assert.deepEqual(log.subs, want, t == leader ? "the leader" : "a follower");
      assert.deepEqual(log.errors, []);
    }
    // The leader gone, the new one passes the next change on.
    await leader.close();
    await until(async () => {
      const m = await gw.metrics();
      return m.streams == 1 && m.opened >= 2 && (await leaders(rest)).length == 1;
    }, "a new leader's stream");
    for (const t of rest) await t.waitForFunction(() => window.sse.state == "open", null, { timeout: WAIT, polling: 50 });
    want.push({ subscribed: 1, unsubscribed: 0, data: [3] });
    assert.deepEqual(await gw.subscribe({ user: "ida", subscribe: ["room:c"], data: [3] }), [200, { streams: 1 }]);
    await allSubscribed(rest, 3);
    for (const t of rest) assert.deepEqual((await getLog(t)).subs, want);
    assert.equal((await gw.metrics()).streams, 1);
  }, ["--subscribed-event"]));

test("a tab opened later gets the messages from then on, from the same stream", { timeout: 60000 }, () =>
  withGateway(async (gw, ctx) => {
    const tabs = await openTabs(gw, ctx, 3, { token: "eve:admin" });
    const early = await publishMany(gw, "eve", 5, 10);
    await allGot(tabs, 5);
    const [late] = await openTabs(gw, ctx, 1, { token: "eve:admin" });
    const later = await publishMany(gw, "eve", 5, 10);
    await allGot(tabs, 10);
    await allGot([late], 5);
    for (const t of tabs) assert.deepEqual((await getLog(t)).messages.map((m) => m.id), [...early, ...later]);
    const log = await getLog(late);
    assert.deepEqual(log.messages.map((m) => m.id), later);
    assert.equal(log.tokenCalls, 0);
    assert.equal(log.leader, false);
    assert.deepEqual(await gw.metrics(), { streams: 1, opened: 1, expired: 0 });
  }));

test("a token expiring while shared is rotated once, by the leader", { timeout: 90000 }, () =>
  withGateway(async (gw, ctx) => {
    const tabs = await openTabs(gw, ctx, 4, { token: "fay:admin:1.5" });
    // Until two rotations have happened (at most 200 messages).
    let N = 0, rotations = 0;
    const ids = [];
    while (N < 200 && !(rotations >= 2 && N >= 10)) {
      ids.push(await gw.publish({ targets: ["user:fay"], handler_id: 1, data: { n: ++N } }));
      await sleep(40);
      if (N % 5 == 0) rotations = (await gw.metrics()).expired;
    }
    ids.push(await gw.publish({ targets: ["user:fay"], handler_id: 1, data: { n: ++N } }));
    await allGot(tabs, N);
    const logs = await Promise.all(tabs.map(getLog));
    for (const log of logs) {
      assert.deepEqual(log.messages.map((m) => m.id), ids);
      assert.deepEqual(log.errors, []);
    }
    const lead = logs.filter((l) => l.leader);
    assert.equal(lead.length, 1);
    const m = await gw.metrics();
    assert.ok(m.expired >= 2, `${m.expired} expirations`);
    // One call at start and one per expiry, all the leader's.
    assert.equal(lead[0].tokenCalls, 1 + m.expired, JSON.stringify(m));
    assert.equal(logs.reduce((n, l) => n + l.tokenCalls, 0), lead[0].tokenCalls);
    assert.equal(m.streams, 1);
  }));

test("close() in a follower stops it; close() in the leader hands the stream over", { timeout: 60000 }, () =>
  withGateway(async (gw, ctx) => {
    const tabs = await openTabs(gw, ctx, 3, { token: "gus:admin" });
    const [leader] = await leaders(tabs);
    const [follower, other] = tabs.filter((t) => t != leader);
    const first = await publishMany(gw, "gus", 3, 10);
    await allGot(tabs, 3);
    await follower.evaluate(() => { window.closed = true; window.sse.close(); });
    await leader.evaluate(() => { window.closed = true; window.sse.close(); });
    assert.equal(await leader.evaluate(() => window.sse.leader), false);
    await until(async () => (await gw.metrics()).opened == 2, "a second stream");
    await other.waitForFunction(() => window.sse.leader && window.sse.state == "open", null, { timeout: WAIT });
    const next = await publishMany(gw, "gus", 3, 10);
    await allGot([other], 6);
    assert.deepEqual((await getLog(other)).messages.map((m) => m.id), [...first, ...next]);
    for (const t of [leader, follower]) {
      const log = await getLog(t);
      assert.equal(log.afterClose, 0);
      assert.equal(log.messages.length, 3);
      assert.equal(log.state, "closed");
    }
    assert.equal((await gw.metrics()).streams, 1);
  }));

test("without Web Locks or BroadcastChannel, each tab holds its own stream", { timeout: 60000 }, async () => {
  for (const remove of ["delete Navigator.prototype.locks", "delete window.BroadcastChannel"]) {
    await withGateway(async (gw, ctx) => {
      await ctx.addInitScript(remove);
      const tabs = await openTabs(gw, ctx, 2, { token: "hal:admin" });
      assert.equal(await tabs[0].evaluate(() => typeof navigator.locks + typeof BroadcastChannel),
        remove.includes("locks") ? "undefinedfunction" : "objectundefined");
      assert.equal((await leaders(tabs)).length, 2, remove);
      assert.equal((await gw.metrics()).streams, 2, remove);
      const ids = await publishMany(gw, "hal", 3, 10);
      await allGot(tabs, 3);
      for (const t of tabs) {
        const log = await getLog(t);
        assert.deepEqual(log.messages.map((m) => m.id), ids);
        assert.equal(log.tokenCalls, 1);
        assert.equal(t.eventsUrls.length, 1);
      }
    });
  }
});
