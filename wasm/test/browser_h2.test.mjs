// The wasm client's browser tests (wasm/test/browser.test.mjs, unchanged and
// run as they are) over HTTPS + HTTP/2 (issue 14): every gateway the suite
// starts gets --tls-cert/--tls-key (a throw-away ECDSA P-256 certificate) on
// its --listen port plus a --plain-listen port; the browser is sent to
// https:// on the TLS port, and the suite's own HTTP calls from node
// (health, publish, held streams) go to the plain port. Each page, when the
// suite closes it, must have fetched everything from the gateway over h2
// (CDP's response.protocol for every response, EventSource streams
// included; the navigation's nextHopProtocol) — a final test checks that
// this covered real streams. Run by ctest (wasm_browser_h2) or
// `node wasm/test/browser_h2.test.mjs` from the top directory.
import { test } from "node:test";
import assert from "node:assert/strict";
import childProcess from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { syncBuiltinESMExports } from "node:module";
import net from "node:net";
import os from "node:os";
import path from "node:path";
import { CHROMIUM_ARGS, makeCert } from "../../spec/browser/tls_support.mjs";
// (support.mjs spawns through child_process's live binding: patched below)
import { chromium, BIN } from "./support.mjs";

const dir = mkdtempSync(path.join(os.tmpdir(), "tinysse-wasm-h2-"));
process.on("exit", () => rmSync(dir, { recursive: true, force: true }));
const tls = makeCert(dir);

// Plain ports handed out to the gateways, reserved together so they differ.
async function reservePorts(n) {
  const servers = await Promise.all(Array.from({ length: n }, () => new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => resolve(s));
    s.on("error", reject);
  })));
  const ports = servers.map((s) => s.address().port);
  await Promise.all(servers.map((s) => new Promise((r) => s.close(r))));
  return ports;
}
const spare = await reservePorts(24);
const plainOf = new Map(); // TLS port -> its plain port (a restart on the same port keeps both)

// A gateway the suite starts: TLS on its --listen port, and a plain port.
const spawn0 = childProcess.spawn;
childProcess.spawn = function (file, args, ...rest) {
  if (file === BIN && Array.isArray(args) && args[0] == "--listen") {
    const port = Number(args[1].split(":").pop());
    if (!plainOf.has(port)) {
      const plain = spare.filter((p) => p != port && ![...plainOf.values()].includes(p)).shift();
      if (!plain) throw new Error("browser_h2: out of reserved plain ports");
      spare.splice(spare.indexOf(plain), 1);
      plainOf.set(port, plain);
    }
    args = [...args, "--tls-cert", tls.cert, "--tls-key", tls.key, "--plain-listen", `127.0.0.1:${plainOf.get(port)}`];
  }
  return spawn0.call(this, file, args, ...rest);
};
syncBuiltinESMExports();

const gatewayUrl = /http:\/\/127\.0\.0\.1:(\d+)/g;
// What the browser gets: https:// on a gateway's TLS port.
const forBrowser = (s) => s.replace(gatewayUrl, (m, p) => (plainOf.has(Number(p)) ? `https://127.0.0.1:${p}` : m));
// What node gets: the gateway's plain port.
const forNode = (s) => s.replace(gatewayUrl, (m, p) => (plainOf.has(Number(p)) ? `http://127.0.0.1:${plainOf.get(Number(p))}` : m));
const deep = (x, f) => typeof x == "string" ? f(x)
  : Array.isArray(x) ? x.map((v) => deep(v, f))
  : x && typeof x == "object" && Object.getPrototypeOf(x) === Object.prototype
    ? Object.fromEntries(Object.entries(x).map(([k, v]) => [k, deep(v, f)]))
    : x;

const fetch0 = globalThis.fetch;
globalThis.fetch = (input, init) => fetch0(typeof input == "string" || input instanceof URL ? forNode(String(input)) : input, init);

// What was checked, for the final test.
const seen = { pages: 0, responses: 0, streams: 0, navigations: 0 };
const isGateway = (url) => { const m = /^https:\/\/127\.0\.0\.1:(\d+)\//.exec(url); return m && plainOf.has(Number(m[1])); };

async function watchPage(context, page) {
  const responses = [];
  const cdp = await context.newCDPSession(page);
  cdp.on("Network.responseReceived", ({ type, response }) =>
    isGateway(response.url) && responses.push({ url: response.url, type, protocol: response.protocol }));
  await cdp.send("Network.enable");
  for (const name of ["goto", "evaluate", "waitForFunction"]) {
    const f = page[name].bind(page);
    page[name] = (fnOrUrl, arg, ...rest) =>
      name == "goto" ? f(forBrowser(fnOrUrl), arg, ...rest) : f(fnOrUrl, deep(arg, forBrowser), ...rest);
  }
  const close = page.close.bind(page);
  page.close = async (...a) => {
    const nav = await page.evaluate(() => {
      const n = performance.getEntriesByType("navigation")[0];
      return n && { url: n.name, protocol: n.nextHopProtocol };
    });
    await close(...a);
    const wrong = responses.filter((r) => r.protocol != "h2");
    assert.equal(wrong.length, 0, `responses from the gateway not over h2 on the page at ${nav?.url}: ` +
      wrong.map((r) => `${r.protocol} ${r.type} ${r.url}`).join(", "));
    if (nav && isGateway(nav.url)) {
      assert.equal(nav.protocol, "h2", `the navigation to ${nav.url}`);
      seen.navigations++;
    }
    seen.pages++;
    seen.responses += responses.length;
    seen.streams += responses.filter((r) => r.type == "EventSource").length;
  };
}

// The suite's persistent context: certificate errors ignored, pages watched.
const launch0 = chromium.launchPersistentContext.bind(chromium);
chromium.launchPersistentContext = async (profile, options = {}) => {
  const context = await launch0(profile, { ...options, ignoreHTTPSErrors: true,
    args: [...new Set([...(options.args ?? []), ...CHROMIUM_ARGS])] });
  const newPage = context.newPage.bind(context);
  context.newPage = async (...a) => {
    const page = await newPage(...a);
    await watchPage(context, page);
    return page;
  };
  return context;
};

await import("./browser.test.mjs");

test("the suite above ran over HTTPS + HTTP/2", () => {
  assert.ok(plainOf.size >= 5, `gateways started with TLS: ${plainOf.size}`);
  assert.ok(seen.pages >= 8, `pages checked: ${seen.pages}`);
  assert.ok(seen.navigations >= 7, `navigations to the gateway over h2: ${seen.navigations}`);
  assert.ok(seen.streams >= 10, `EventSource streams from the gateway over h2: ${seen.streams}`);
  console.log(`over h2: ${seen.pages} pages, ${seen.navigations} navigations, ${seen.responses} responses ` +
    `from ${plainOf.size} TLS gateways, ${seen.streams} of them EventSource streams`);
});
