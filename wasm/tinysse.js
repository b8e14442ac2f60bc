// The browser client of the tinysse gateway: `connect(options)` (see
// tinysse.d.ts). Every decision (state, backoff, envelope checks, last id,
// dedup) is made by tinysse.wasm, built from tinysse_client.c; this glue only
// owns what JS must: the EventSource, one timer, tokenProvider, the callbacks,
// and, with `share`, the tab election (Web Locks) and the BroadcastChannel.

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
// Whether id a ("<epoch>-<seq>") is before id b.
const before = (a, b) => {
  const [x, y] = a.split("-").map(BigInt), [u, v] = b.split("-").map(BigInt);
  return x < u || (x == u && y < v);
};

export async function connect(options) {
  const o = { endpoint: "/events", retryInterval: 1000, maxRetryDelay: 30000, connectTimeout: 10000, events: [] };
  for (const k in options) if (options[k] !== undefined) o[k] = options[k];
  if (typeof o.tokenProvider != "function") throw new TypeError("tinysse: tokenProvider must be a function");
  const w = (await WebAssembly.instantiate(await load())).exports;
  const enc = new TextEncoder(), dec = new TextDecoder();
  // share: the lock's and the channel's name, or "" (one stream per tab).
  const share = o.share && globalThis.BroadcastChannel && navigator.locks
    ? `tinysse:${o.share === true ? "" : o.share}` : "";
  // lead: this tab holds the stream; pos: where its stream is (shared only);
  // synced: a follower knows where to start; ac/release: the lock request and the held lock.
  let es = null, timer, gen = 0, closed = false, token = "", shown = "idle";
  let lead = !share, pos = "", synced, ac, release, bc;

  const text = (at, len) => dec.decode(new Uint8Array(w.memory.buffer, at, len));
  const last = () => text(w.last_at(), w.last_len());
  // Copies s into the wasm input buffer: its UTF-8 length, or ~0 when it cannot fit.
  const put = (s) => {
    const at = w.input(s.length * 3);
    return at ? enc.encodeInto(s, new Uint8Array(w.memory.buffer, at, s.length * 3)).written : -1;
  };
  // App callbacks: none after close(), and a throwing one cannot break the client.
  const call = (f, x) => {
    if (!closed && f) try { f(x); } catch (e) { reportError(e); }
  };
  // To the other tabs, from the leader only.
  const post = (m) => lead && bc?.postMessage(m);
  const show = (s) => {
    if (s != shown) call(o.onState, (shown = s));
    post({ s, at: last() });
  };

  // Carries out the actions the wasm asked for (TSC_DO_* in tinysse_client.h);
  // x is what JS knows about the event: name and raw text, reset or busy data, cause.
  function step(a, x = {}) {
    if (a & 1) clearTimeout(timer);
    if (a & 2 && es) { es.close(); es = null; }
    if (a & 4) show(STATES[w.state()]);
    if (a & 8) {
      const e = { ...x, type: TYPES[w.error()], message: WHY[w.why()] };
      call(o.onError, e);
      // Followers see parse errors of their own.
      e.type != "parse" && post({ e: { ...e, cause: undefined } });
    }
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

  // A stream event, this tab's or (in a follower) the leader's: a message
  // (event: its name) or a reset (event 0; s: the gateway's position).
  function feed(event, s, x, id) {
    post([event, s, x]);
    pos = id || pos;
    step(event === 0 ? w.reset(put(s)) : w.message(put(s)), x || { event, raw: s });
  }

  function open() {
    const u = new URL(o.endpoint, location.href), from = share ? pos : last();
    u.searchParams.set("token", token);
    if (from) u.searchParams.set("lastEventId", from);
    const s = (es = new EventSource(u, { withCredentials: !!o.withCredentials }));
    // Only the current EventSource's events count.
    const on = (type, f) => s.addEventListener(type, (e) => es == s && f(e));
    on("open", () => step(w.opened()));
    on("error", () => step(w.failed(s.readyState)));
    on("tinysse.auth", () => step(w.auth()));
    // Shed: a 200 stream, so the browser retries after its retry:; x is {type, reason, retry_ms}.
    on("tinysse.busy", (e) => { const x = info(e); step(w.busy(x.retry_ms >>> 0), x); });
    on("tinysse.reset", (e) => feed(0, e.lastEventId, info(e, { id: e.lastEventId }), e.lastEventId));
    // A server-side subscription changed the stream: x is {subscribed, unsubscribed, data}; else ignored.
    on("tinysse.subscribed", (e) => {
      const { type, ...x } = info(e);
      if (type == "subscribed") { post({ u: x }); call(o.onSubscribed, x); }
    });
    for (const event of ["message", ...o.events]) on(event, (e) => feed(event, e.data, 0, e.lastEventId));
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

  // Waits for the lock; holding it, this tab leads: it asks the others for
  // their last ids, and after 150 ms connects from the earliest one.
  function elect() {
    const c = (ac = new AbortController());
    navigator.locks.request(share, { signal: c.signal }, () => c.signal.aborted || closed ? 0 : new Promise((r) => {
      release = r;
      lead = synced = true;
      pos = last();
      post({ who: 1 });
      timer = setTimeout(() => step(w.lead()), 150);
    })).catch(() => {
      // Refused (an opaque origin): this tab streams on its own.
      if (!c.signal.aborted && !closed) { lead = true; pos = last(); step(w.lead()); }
    });
  }

  // Stops leading or waiting to: the lock goes to another tab.
  function resign() {
    ac.abort();
    release?.();
    if (lead) { lead = false; step(w.follow()); }
  }

  w.init(o.retryInterval, o.maxRetryDelay, o.connectTimeout, (Math.random() * 2 ** 32) >>> 0);
  if (share) {
    bc = new BroadcastChannel(share);
    bc.onmessage = ({ data: m }) => {
      if (closed) return;
      if (m.who) return lead || bc.postMessage({ min: last() });
      if (m.hi) return post({ s: shown, at: last() });
      // A tab behind the stream (answering late, or back from a freeze): restream from its last id.
      if (lead) {
        if (m.min && (!pos || before(m.min, pos))) { pos = m.min; if (es) { es.close(); open(); } }
        return;
      }
      if (m.e) return call(o.onError, m.e);
      if (m.u) return call(o.onSubscribed, m.u);
      if (m.s) {
        // The first word from a leader: take its last id as ours, to start from there.
        if (!synced && m.at && !w.last_len()) w.reset(put(m.at));
        synced = true;
        return show(m.s);
      }
      if (synced && Array.isArray(m) && (!m[0] || m[0] == "message" || o.events.includes(m[0]))) feed(...m);
    };
    step(w.follow());
    show("connecting");
    bc.postMessage({ hi: 1 });
    elect();
    // A frozen tab's document lives on, and so would its lock: leave it on
    // freeze; on resume, queue again and ask the leader for what was missed.
    const d = globalThis.document;
    d?.addEventListener("freeze", () => closed || resign());
    d?.addEventListener("resume", () => closed || (elect(), bc.postMessage({ min: last() })));
  } else step(w.start());
  return {
    close() {
      if (!closed) {
        closed = true;
        gen++;
        if (share) { resign(); bc.close(); }
        step(w.close());
      }
    },
    get state() { return shown; },
    get lastEventId() { return last(); },
    get leader() { return lead && !closed; },
  };
}
