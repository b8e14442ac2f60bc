// The browser client of the tinysse gateway: `connect(options)` (see
// tinysse.d.ts). Every decision (state, backoff, envelope checks, last id,
// dedup) is made by tinysse.wasm, built from tinysse_client.c; this glue only
// owns what JS must: the EventSource, one timer, tokenProvider, the callbacks.

const TYPES = ["connect", "auth", "parse", "timeout", "busy"];
const STATES = ["idle", "connecting", "open", "backoff", "closed"];
const WHY = [
  "connection lost or gateway unreachable; the browser is retrying",
  "the gateway refused the stream (a status other than 200, usually 401)",
  "tokenProvider failed",
  "no open within connectTimeout",
  "the gateway shed the stream; the browser retries when it said",
  "", "envelope is not JSON", "envelope is not an object", "bad or missing id",
  "bad or missing handler_id", "missing data", "duplicate field", "nested too deeply",
  "too large",
];
let module;

function load() {
  module ||= fetch(new URL("tinysse.wasm", import.meta.url))
    .then((r) => (r.ok ? r.arrayBuffer() : Promise.reject(new Error(`tinysse.wasm: HTTP ${r.status}`))))
    .then((b) => WebAssembly.compile(b))
    .catch((e) => { module = null; throw e; });
  return module;
}

// The data of the gateway's own events (JSON) added to x; data that is not JSON is left out.
const info = (e, x = {}) => { try { return { ...x, ...JSON.parse(e.data) }; } catch { return x; } };

export async function connect(options) {
  const o = { endpoint: "/events", retryInterval: 1000, maxRetryDelay: 30000, connectTimeout: 10000, events: [] };
  for (const k in options) if (options[k] !== undefined) o[k] = options[k];
  if (typeof o.tokenProvider != "function") throw new TypeError("tinysse: tokenProvider must be a function");
  const w = (await WebAssembly.instantiate(await load())).exports;
  const enc = new TextEncoder(), dec = new TextDecoder();
  let es = null, timer, gen = 0, closed = false, token = "";

  const text = (at, len) => dec.decode(new Uint8Array(w.memory.buffer, at, len));
  // Copies s into the wasm input buffer: its UTF-8 length, or ~0 when it cannot fit.
  const put = (s) => {
    const at = w.input(s.length * 3);
    return at ? enc.encodeInto(s, new Uint8Array(w.memory.buffer, at, s.length * 3)).written : -1;
  };
  // App callbacks: none after close(), and a throwing one cannot break the client.
  const call = (f, x) => {
    if (!closed && f) try { f(x); } catch (e) { reportError(e); }
  };

  // Carries out the actions the wasm asked for (TSC_DO_* in tinysse_client.h);
  // x is what JS knows about the event: name and raw text, reset or busy data, cause.
  function step(a, x = {}) {
    if (a & 1) clearTimeout(timer);
    if (a & 2 && es) { es.close(); es = null; }
    if (a & 4) call(o.onState, STATES[w.state()]);
    if (a & 8) call(o.onError, { ...x, type: TYPES[w.error()], message: WHY[w.why()] });
    if (a & 16) call(o.onReset, x);
    if (a & 32) deliver(x.event);
    if (closed) return;
    if (a & 64) open();
    if (a & 128) fetchToken();
    if (a & 256) { clearTimeout(timer); timer = setTimeout(() => step(w.timer()), w.delay()); }
  }

  function deliver(event) {
    let data;
    try {
      data = JSON.parse(text(w.data_at(), w.data_len()));
    } catch (e) {
      return call(o.onError, { type: "parse", message: String(e) });
    }
    call(o.onMessage, { id: text(w.id_at(), w.id_len()), handler_id: w.handler(), data, event });
  }

  function open() {
    const u = new URL(o.endpoint, location.href), n = w.last_len();
    u.searchParams.set("token", token);
    if (n) u.searchParams.set("lastEventId", text(w.last_at(), n));
    const s = (es = new EventSource(u, { withCredentials: !!o.withCredentials }));
    // Only the current EventSource's events count.
    const on = (type, f) => s.addEventListener(type, (e) => es == s && f(e));
    on("open", () => step(w.opened()));
    on("error", () => step(w.failed(s.readyState)));
    on("tinysse.auth", () => step(w.auth()));
    // Shed: a 200 stream, so the browser retries after its retry:; x is {type, reason, retry_ms}.
    on("tinysse.busy", (e) => { const x = info(e); step(w.busy(x.retry_ms >>> 0), x); });
    on("tinysse.reset", (e) => step(w.reset(put(e.lastEventId)), info(e, { id: e.lastEventId })));
    for (const event of ["message", ...o.events])
      on(event, (e) => step(w.message(put(e.data)), { event, raw: e.data }));
  }

  function fetchToken() {
    const g = ++gen;
    new Promise((resolve) => resolve(o.tokenProvider()))
      .then((t) => {
        if (typeof t != "string" || !t) throw new Error("tokenProvider gave no token");
        if (g == gen) { token = t; step(w.token(1)); }
      })
      .catch((cause) => g == gen && step(w.token(0), { cause }));
  }

  w.init(o.retryInterval, o.maxRetryDelay, o.connectTimeout, (Math.random() * 2 ** 32) >>> 0);
  step(w.start());
  return {
    close() {
      if (!closed) { closed = true; gen++; step(w.close()); }
    },
    get state() { return STATES[w.state()]; },
    get lastEventId() { return text(w.last_at(), w.last_len()); },
  };
}
