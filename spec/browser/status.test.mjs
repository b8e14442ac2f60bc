// The live status page in headless Chromium (Debian's /usr/bin/chromium,
// driven by playwright-core from wasm/node_modules): it connects with the
// publish key, shows the gateway's numbers from its own SSE stream, and lists
// a script error; a screenshot is kept in build/status-artifacts/.
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
const KEY = "status-page-test-publish-key";
const WAIT = 15000;

let gw, context, profile;
setTimeout(() => { console.error("status page test: time limit"); process.exit(1); }, 120000).unref();

const freePort = () => new Promise((resolve, reject) => {
  const s = net.createServer().listen(0, "127.0.0.1", () => {
    const { port } = s.address();
    s.close(() => resolve(port));
  });
  s.on("error", reject);
});

before(async () => {
  const port = await freePort();
  const url = `http://127.0.0.1:${port}`;
  const proc = spawn(BIN, ["--listen", `127.0.0.1:${port}`, "--script",
    path.join(root, "spec/e2e/scripts/test.lua"), "--workers", "1", "--publish-key", KEY],
    { stdio: ["ignore", "ignore", "inherit"] });
  process.on("exit", () => proc.kill("SIGKILL"));
  for (const end = Date.now() + WAIT; ; await new Promise((r) => setTimeout(r, 50))) {
    try { if ((await fetch(`${url}/healthz`)).ok) break; } catch {}
    if (Date.now() > end || proc.exitCode !== null) throw new Error("gateway did not start");
  }
  gw = { url, proc };
  profile = mkdtempSync(path.join(os.tmpdir(), "tinysse-status-"));
  mkdirSync(ARTIFACTS, { recursive: true });
  context = await chromium.launchPersistentContext(profile, {
    executablePath: process.env.TINYSSE_CHROMIUM || "/usr/bin/chromium",
    headless: true,
    args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
      "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic"],
  });
});

after(async () => {
  await context?.close();
  rmSync(profile, { recursive: true, force: true });
  gw?.proc.kill("SIGTERM");
});

test("the status page shows live numbers and recent errors", async () => {
  const page = await context.newPage();
  const pageErrors = [];
  page.on("pageerror", (e) => pageErrors.push(e.message));
  await page.goto(`${gw.url}/status`, { timeout: WAIT });

  // a wrong key is refused, visibly
  await page.fill("#key", "not-the-key-not-the-key");
  await page.click("button");
  await page.waitForFunction(() => document.getElementById("state").className === "down", null, { timeout: WAIT });

  await page.fill("#key", KEY);
  await page.click("button");
  await page.waitForFunction(() => document.getElementById("state").textContent === "live", null, { timeout: WAIT });

  // traffic and a script error for the page to show
  await fetch(`${gw.url}/events?token=boom`);
  for (let i = 0; i < 5; i++) {
    const r = await fetch(`${gw.url}/publish`, { method: "POST", headers: { Authorization: `Bearer ${KEY}` },
      body: JSON.stringify({ targets: ["all"], handler_id: 0, data: i }) });
    assert.equal(r.status, 200);
  }
  await page.waitForFunction(() => Number(document.getElementById("published").textContent) >= 5, null, { timeout: WAIT });
  await page.waitForFunction(() => document.getElementById("errors").textContent.includes("validate_token exploded"),
    null, { timeout: WAIT });
  assert.ok(Number(await page.textContent("#connections")) >= 1, "the page's own stream is counted");
  assert.ok(Number(await page.textContent("#scripterrors")) >= 1);
  const shot = path.join(ARTIFACTS, "status.png");
  await page.screenshot({ path: shot, fullPage: true });
  console.log(`screenshot: ${shot}`);
  assert.deepEqual(pageErrors, []);
});
