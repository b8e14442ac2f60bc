// Shedding that a browser survives: 20 WHATWG EventSources (the npm
// `eventsource` package from wasm/node_modules, which follows the spec's
// reconnect rules as a browser does) against a gateway whose script allows 5
// streams. The 15 shed ones get `200` + `retry:` + `tinysse.busy` and keep
// retrying (a 503 would close them for good); a SIGHUP that raises
// max_clients lets all 20 in, and a message to "all" reaches each of them.
import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createRequire } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const here = path.dirname(fileURLToPath(import.meta.url));
const root = path.resolve(here, "../..");
const require = createRequire(path.join(root, "wasm/package.json"));
let EventSource;
try {
  ({ EventSource } = require("eventsource"));
} catch {
  console.error("eventsource busy test: the eventsource package is missing; run `npm ci` in wasm/");
  process.exit(1);
}
const BIN = process.env.TINYSSE_BIN || path.join(root, "build/tinysse");
const KEY = "eventsource-busy-test-publish-key";
const CLIENTS = 20, ADMITTED = 5, RETRY_MIN = 200, RETRY_MAX = 800;
const WAIT = 15000;
setTimeout(() => { console.error("eventsource busy test: time limit"); process.exit(1); }, 120000).unref();

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
  s.on("error", reject);
});

// spec/e2e/scripts/test.lua's tokens ("user:role[:ttl]") and channels, with
// max_clients in the script so that SIGHUP can change it (the command line
// would win over the script).
const script = (maxClients) => `
local tinysse = require "tinysse"
local M = { config = { max_clients = ${maxClients}, busy_retry_min = ${RETRY_MIN}, busy_retry_max = ${RETRY_MAX} } }
function M.validate_token(token, req)
  local user, role, ttl = token:match("^([%w%-]+):([%w%-]+):?(%d*%.?%d*)$")
  if not user then return nil, "malformed test token" end
  return user, role, ttl ~= "" and (tinysse.now() + tonumber(ttl)) or nil
end
function M.channels(user, role, req)
  return { "all", "role:" .. role, "user:" .. user }
end
return M
`;

// Polls cond every 50 ms for at most ms; fails with what() when it never holds.
async function waitFor(cond, ms, what) {
  for (const end = Date.now() + ms; ; await sleep(50)) {
    if (await cond()) return;
    if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what()}`);
  }
}

// Sum of a metric's samples (every label set), or NaN when it is absent.
async function metric(url, name, labels = "") {
  const text = await (await fetch(`${url}/metrics`)).text();
  const re = new RegExp(`^${name}(\\{[^}]*\\})? (\\S+)$`, "gm");
  let sum = NaN;
  for (const [, l = "", v] of text.matchAll(re)) if (l.includes(labels)) sum = (sum || 0) + Number(v);
  return sum;
}

test("shed EventSources get tinysse.busy, keep retrying, and get in once max_clients is raised",
  { timeout: 90000 }, async () => {
    const dir = mkdtempSync(path.join(os.tmpdir(), "tinysse-busy-"));
    const file = path.join(dir, "busy.lua");
    writeFileSync(file, script(ADMITTED));
    const port = await freePort();
    const url = `http://127.0.0.1:${port}`;
    const proc = spawn(BIN, ["--listen", `127.0.0.1:${port}`, "--script", file, "--workers", "1",
      "--publish-key", KEY], { stdio: ["ignore", "ignore", "pipe"] });
    let log = "";
    proc.on("error", (e) => (log += `${e}\n`));
    proc.stderr.on("data", (d) => (log = (log + d).slice(-8000)));
    const exited = new Promise((r) => proc.on("exit", r));
    process.on("exit", () => proc.kill("SIGKILL"));
    const clients = [];
    const closedSeen = []; // "<client>: <when>" for every sighting of readyState CLOSED
    try {
      await waitFor(async () => {
        if (proc.exitCode !== null) throw new Error(`gateway exited (${proc.exitCode}): ${log}`);
        try { return (await fetch(`${url}/healthz`)).ok; } catch { return false; }
      }, WAIT, () => `the gateway to start: ${log}`);

      for (let i = 0; i < CLIENTS; i++) {
        const es = new EventSource(`${url}/events?token=u${i}:r`);
        // shedAfterOpen: the stream that opened last was then shed (a busy
        // answer is a 200 stream, so it opens before its busy event arrives).
        const c = { i, es, opens: 0, busy: [], busyAt: [], errors: 0, messages: [], shedAfterOpen: false };
        es.addEventListener("open", () => { c.opens++; c.shedAfterOpen = false; });
        es.addEventListener("tinysse.busy", (e) => {
          try { c.busy.push(JSON.parse(e.data)); } catch { c.busy.push({ raw: e.data }); }
          c.busyAt.push(Date.now());
          c.shedAfterOpen = true;
        });
        es.addEventListener("error", () => {
          c.errors++;
          if (es.readyState === EventSource.CLOSED) closedSeen.push(`${i}: on error ${c.errors}`);
        });
        es.addEventListener("message", (e) => c.messages.push(JSON.parse(e.data)));
        clients.push(c);
      }
      // Every wait also fails at once when an EventSource has given up.
      const alive = () => assert.deepEqual(closedSeen, [], `an EventSource reached readyState CLOSED: ${state()}`);
      const until = (cond, ms, what) => waitFor(async () => (alive(), cond()), ms, what);
      const admitted = () => clients.filter((c) => c.es.readyState === EventSource.OPEN && !c.shedAfterOpen);
      const state = () => JSON.stringify(clients.map((c) =>
        ({ i: c.i, readyState: c.es.readyState, opens: c.opens, busy: c.busy.length, errors: c.errors })));

      // Within about 5 s: 5 streams in, each of the 15 others shed at least once.
      await until(async () => admitted().length === ADMITTED &&
        clients.filter((c) => c.busy.length > 0).length === CLIENTS - ADMITTED &&
        await metric(url, "tinysse_connections") === ADMITTED,
      5000, () => `${ADMITTED} open and ${CLIENTS - ADMITTED} shed: ${state()}`);
      const shed = clients.filter((c) => c.busy.length > 0);
      assert.ok(admitted().every((c) => c.busy.length === 0), state());
      // They keep retrying, paced by the retry: line (EventSource's own
      // default, 3 s, would be too slow for these bounds).
      await until(() => shed.every((c) => c.busy.length >= 2), 2500, () => `a second busy each: ${state()}`);
      const events = shed.flatMap((c) => c.busy);
      for (const b of events) {
        assert.equal(b.type, "busy", JSON.stringify(b));
        assert.equal(b.reason, "max_clients", JSON.stringify(b));
        assert.ok(Number.isInteger(b.retry_ms) && b.retry_ms >= RETRY_MIN && b.retry_ms <= RETRY_MAX, JSON.stringify(b));
      }
      assert.ok(new Set(events.map((b) => b.retry_ms)).size > 1, "retry_ms is jittered");
      for (const c of shed)
        for (let k = 1; k < c.busyAt.length; k++) {
          const gap = c.busyAt[k] - c.busyAt[k - 1], asked = c.busy[k - 1].retry_ms;
          assert.ok(gap >= asked - 20 && gap <= asked + 1500, `client ${c.i} retried after ${gap} ms, asked ${asked}`);
        }
      // The gateway counts each refusal.
      assert.ok(await metric(url, "tinysse_shed_total", 'reason="max_clients"') >= events.length,
        `tinysse_shed_total{reason="max_clients"} counts every busy answer (${events.length} seen)`);
      alive();

      // Raise the limit live: every shed client gets in on its next retry.
      writeFileSync(file, script(100));
      proc.kill("SIGHUP");
      await until(async () => admitted().length === CLIENTS && await metric(url, "tinysse_connections") === CLIENTS,
        WAIT, () => `all ${CLIENTS} open after SIGHUP: ${state()}`);

      const r = await fetch(`${url}/publish`, { method: "POST", headers: { Authorization: `Bearer ${KEY}` },
        body: JSON.stringify({ targets: ["all"], data: { n: 1 } }) });
      const { id } = await r.json();
      assert.equal(r.status, 200);
      await until(() => clients.every((c) => c.messages.length >= 1), WAIT,
        () => `the message on every stream: ${JSON.stringify(clients.map((c) => c.messages.length))}`);
      await sleep(200); // room for a duplicate
      for (const c of clients) assert.deepEqual(c.messages, [{ id, handler_id: 0, data: { n: 1 } }], `client ${c.i}`);

      for (const c of clients) if (c.es.readyState === EventSource.CLOSED) closedSeen.push(`${c.i}: at the end`);
      assert.deepEqual(closedSeen, [], "a shed EventSource gave up");
    } catch (e) {
      console.error("gateway log:", log);
      throw e;
    } finally {
      for (const c of clients) c.es.close();
      if (proc.exitCode === null) {
        proc.kill("SIGTERM");
        const t = setTimeout(() => proc.kill("SIGKILL"), 5000);
        await exited;
        clearTimeout(t);
      }
      rmSync(dir, { recursive: true, force: true });
    }
  });
