// What the browser tests of the client share (browser.test.mjs,
// share.test.mjs): playwright-core with Debian's chromium (never a
// downloaded browser), the paths of the build, bounded waits, a run time
// limit, and the real build/tinysse on a loopback port running
// wasm/test/browser.lua. Nothing started here outlives the run.
import assert from "node:assert/strict";
import { spawn } from "node:child_process";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { freePort } from "../../spec/browser/tls_support.mjs";

let pw;
try {
  pw = await import("playwright-core");
} catch {
  console.error("browser tests: playwright-core is missing; run `npm ci` in wasm/");
  process.exit(1);
}
export const chromium = pw.chromium;

export const here = path.dirname(fileURLToPath(import.meta.url));
export const root = path.resolve(here, "../..");
export const BIN = process.env.TINYSSE_BIN || path.join(root, "build/tinysse");
export const ASSETS = process.env.TINYSSE_ASSETS || path.join(root, "build/wasm");
export const CHROMIUM = process.env.TINYSSE_CHROMIUM || "/usr/bin/chromium";
export const SCRIPT = path.join(here, "browser.lua");
export const WAIT = 15000; // the longest any single condition may take
export const CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"];

const children = new Set();
process.on("exit", () => children.forEach((c) => c.kill("SIGKILL")));

// Ends the run (failing) once it has taken ms.
export function timeLimit(what, ms) {
  setTimeout(() => {
    console.error(`${what}: overall time limit reached`);
    process.exit(1);
  }, ms).unref();
}

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

export { freePort };

export async function until(cond, what, ms = WAIT) {
  for (const end = Date.now() + ms; Date.now() < end; await sleep(50)) if (await cond()) return;
  throw new Error(`timed out waiting for ${what}`);
}

// build/tinysse with one worker and the publish key key (extra: more options).
export class Gateway {
  constructor(port, key, extra = [], script = SCRIPT) {
    this.port = port;
    this.key = key;
    this.extra = extra;
    this.script = script;
    this.url = `http://127.0.0.1:${port}`;
    this.log = "";
  }

  async start() {
    const args = ["--listen", `127.0.0.1:${this.port}`, "--script", this.script, "--workers", "1",
      "--publish-key", this.key, "--assets", ASSETS, "--retry", "500", "--log-level", "warn", ...this.extra];
    const p = (this.proc = spawn(BIN, args, { stdio: ["ignore", "ignore", "pipe"] }));
    children.add(p);
    p.on("error", (e) => (this.log += `${e}\n`));
    p.stderr.on("data", (d) => (this.log = (this.log + d).slice(-4000)));
    this.exited = new Promise((r) => p.on("exit", r)).then(() => children.delete(p));
    for (const end = Date.now() + WAIT; Date.now() < end; await sleep(50)) {
      if (p.exitCode !== null) break;
      try {
        if ((await fetch(`${this.url}/healthz`)).ok) return this;
      } catch {}
    }
    throw new Error(`gateway did not start: ${this.log}`);
  }

  // Stops it with signal (SIGKILL after 5 s).
  async stop(signal = "SIGTERM") {
    if (!this.proc || this.proc.exitCode !== null) return;
    this.proc.kill(signal);
    const t = setTimeout(() => this.proc.kill("SIGKILL"), 5000);
    await this.exited;
    clearTimeout(t);
  }

  async publish(body, query = "") {
    const r = await fetch(`${this.url}/publish${query}`, {
      method: "POST",
      headers: { Authorization: `Bearer ${this.key}` },
      body: typeof body == "string" ? body : JSON.stringify(body),
    });
    const answer = await r.json();
    assert.equal(r.status, 200, JSON.stringify(answer));
    return answer.id;
  }

  async connections() {
    return (await (await fetch(`${this.url}/healthz`)).json()).connections;
  }

  // The gateway's counters: open streams, streams opened, streams closed on token expiry.
  async metrics() {
    const text = await (await fetch(`${this.url}/metrics`)).text();
    const sum = (name) => text.split("\n").filter((l) => l.startsWith(`${name} `) || l.startsWith(`${name}{`))
      .reduce((n, l) => n + Number(l.split(" ").at(-1)), 0);
    return { streams: sum("tinysse_connections"), opened: sum("tinysse_connections_total"),
      expired: sum("tinysse_expired_total") };
  }
}
