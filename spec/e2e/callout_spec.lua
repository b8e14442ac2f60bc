-- Hooks that wait for HTTP call-outs (tinysse.http) against the test
-- backend (spec/fault/backend.c): only the hook waits, the worker goes on
-- delivering; failures of every kind reach the hook as nil, why; the CPU
-- budget counts running time and the wall-clock limit the whole call; the
-- number on the wire is bounded and connections are reused; a SIGHUP or a
-- client leaving mid-call loses nothing; cookies carry tokens.
local T = require "support"
local socket = require "socket"
local cjson = require "cjson"

-- upper time bounds stretch under valgrind and sanitizers
local SLOW = (T.valgrind and 6) or (os.getenv("TINYSSE_SANITIZED") and 2) or 1

-- Sends a stream request without waiting for the answer.
local function open_raw(g, path, headers)
  local c = assert(g:connect(5))
  local lines = { "GET " .. path .. " HTTP/1.1", "Host: 127.0.0.1", "Accept: text/event-stream" }
  for k, v in pairs(headers or {}) do lines[#lines + 1] = k .. ": " .. v end
  c:send(table.concat(lines, "\r\n") .. "\r\n\r\n")
  return c
end

-- The status of the answer on c (reads the status line only).
local function status_of(c, timeout)
  c:settimeout(timeout or 5)
  local line = c:receive("*l")
  return line and tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
end

describe("call-outs from hooks", function()
  local dir, backend, g
  setup(function()
    dir = T.tmpdir()
    backend = T.start_backend(dir)
    g = T.start({ script = T.root .. "/spec/e2e/scripts/callout.lua", env = { BACKEND = backend.url },
                  args = { "--hook-timeout", "0.25", "--hook-wall-timeout", "3",
                           "--callout-concurrency", "8", "--token-cookie", "sid",
                           "--cors-origin", "http://app.example" } })
  end)
  teardown(function()
    if g then g:stop() end
    if backend then backend.stop() end
  end)

  it("cannot wait at the script's top level", function()
    assert.truthy(g:logtext():find("top-level call-out: not_available", 1, true))
  end)

  it("opens a stream after validate_token and channels asked the backend", function()
    local s = g:stream("/events?token=ok:echo1")
    assert.are.equal(200, s.status)
    s:next(2)
    g:publish({ targets = { "echo:echo1:application/json" }, handler_id = 0, data = "x" })
    local m = s:message(3)
    assert.truthy(m, "the channel named from the backend's echo was joined")
    s:close()
  end)

  it("keeps delivering to open streams while a hook waits", function()
    local s = g:stream("/events?token=ok:steady")
    s:next(2)
    local t0 = socket.gettime()
    local slow = open_raw(g, "/events?token=delay800:slowpoke")
    socket.sleep(0.1)
    g:publish({ targets = { "user:steady" }, handler_id = 0, data = "during" })
    local m = s:message(2)
    local got = socket.gettime() - t0
    assert.truthy(m, "no delivery while the hook waited")
    assert.is_true(got < 0.7 * SLOW, ("delivered after %.3f s: the worker waited with the hook"):format(got))
    assert.are.equal(200, status_of(slow, 5))
    assert.is_true(socket.gettime() - t0 >= 0.75, "the slow stream opened before its backend answered")
    slow:close()
    s:close()
  end)

  it("gives failures to the hook as nil, why", function()
    for mode, want in pairs({ hang = "timeout", garbage = "bad_response", refused = "connect_failed",
                              badurl = "bad_url" }) do
      local t0 = socket.gettime()
      local s = g:stream("/events?token=" .. mode .. ":u")
      assert.are.equal(401, s.status, mode)
      assert.truthy(s.json.message:find("backend: " .. want, 1, true), mode .. ": " .. tostring(s.body))
      if mode == "hang" then
        local took = socket.gettime() - t0
        assert.is_true(took >= 0.45 and took < 2 * SLOW, ("hang took %.2f s (timeout 0.5)"):format(took))
      end
    end
    local s = g:stream("/events?token=status:u")
    assert.are.equal(401, s.status)
    assert.truthy(s.json.message:find("backend status 503", 1, true))
  end)

  it("counts running time against --hook-timeout, not the wait", function()
    local s = g:stream("/events?token=wait:patient") -- waits 0.6 s > 0.25 s budget
    assert.are.equal(200, s.status)
    s:close()
    s = g:stream("/events?token=twice:u2")
    assert.are.equal(200, s.status)
    s:close()
    s = g:stream("/events?token=pcall:u3")
    assert.are.equal(200, s.status)
    s:close()
    local st = g:stream("/events?token=spin:burner")
    assert.are.equal(500, st.status)
    assert.truthy(st.json.message:find("time budget", 1, true), st.body)
  end)

  it("bounds the whole hook by --hook-wall-timeout", function()
    local t0 = socket.gettime()
    local s = g:stream("/events?token=hang30:u")
    local took = socket.gettime() - t0
    assert.are.equal(401, s.status)
    assert.truthy(s.json.message:find("timeout", 1, true), s.body)
    assert.is_true(took >= 2.8 and took < 5 * SLOW, ("answered after %.2f s (wall limit 3)"):format(took))
  end)

  it("bounds call-outs on the wire and reuses connections", function()
    backend.get("/reset")
    local t0 = socket.gettime()
    local conns = {}
    for i = 1, 40 do conns[i] = open_raw(g, "/events?token=delay200:crowd" .. i) end
    for i = 1, 40 do assert.are.equal(200, status_of(conns[i], 10), "stream " .. i) end
    local took = socket.gettime() - t0
    for _, c in ipairs(conns) do c:close() end
    local st = backend.stats()
    -- 40 calls of 0.2 s, 8 at a time per worker: at least 40 / (8 x workers)
    -- rounds, and far from 40 in series
    local workers = tonumber(os.getenv("TINYSSE_TEST_WORKERS") or "1")
    local rounds = math.ceil(40 / (8 * workers))
    assert.is_true(took >= 0.19 * rounds, ("40 calls took %.2f s: more than 8 per worker were on the wire"):format(took))
    assert.is_true(took < 6 * SLOW, ("40 calls took %.2f s"):format(took))
    assert.is_true(st.by_path["/delay"] >= 40)
    assert.is_true(st.connections <= 8 * workers + 2, "connections opened: " .. st.connections)
  end)

  it("authorizes publishers and issues tokens through call-outs", function()
    local st = g:request("POST", "/publish", { ["X-Allow"] = "yes", ["Content-Type"] = "application/json" },
                         cjson.encode({ targets = { "all" }, handler_id = 0, data = 1 }))
    assert.are.equal(200, st)
    local st2, _, _, j = g:request("POST", "/publish", { ["X-Allow"] = "no", ["Content-Type"] = "application/json" },
                                   cjson.encode({ targets = { "all" }, handler_id = 0, data = 1 }))
    assert.are.equal(403, st2)
    assert.are.equal("the backend said no", j.message)
    local st3, _, _, tok = g:request("POST", "/auth/sse-token", {}, "")
    assert.are.equal(200, st3)
    assert.are.equal("ok:tok", tok.token)
  end)

  it("runs on_disconnect's call-out without anyone waiting", function()
    backend.get("/reset")
    local s = g:stream("/events?token=ok:leaver")
    s:next(2)
    s:close()
    T.wait_until("on_disconnect's call-out", function()
      local st = backend.stats()
      return (st.by_path["/echo"] or 0) >= 1
    end, 5)
  end)

  it("loses no request when the script is reloaded mid-call", function()
    local conns = {}
    for i = 1, 6 do conns[i] = open_raw(g, "/events?token=delay700:reload" .. i) end
    socket.sleep(0.2)
    g:signal("HUP")
    for i = 1, 6 do assert.are.equal(200, status_of(conns[i], 10), "stream " .. i) end
    for _, c in ipairs(conns) do c:close() end
    T.wait_until("the reload", function() return g:logtext():find("script_reloaded", 1, true) end, 5)
    local s = g:stream("/events?token=ok:after")
    assert.are.equal(200, s.status)
    s:close()
  end)

  it("survives clients that leave while their hook waits", function()
    for i = 1, 10 do open_raw(g, "/events?token=delay300:gone" .. i):close() end
    local p = open_raw(g, "/events?token=ok:x", {})
    p:close()
    socket.sleep(0.6)
    local s = g:stream("/events?token=ok:still")
    assert.are.equal(200, s.status)
    s:close()
    assert.is_true(g:alive())
    T.wait_until("the abandoned hooks to end", function()
      return g:metric("tinysse_hooks_waiting") == 0
    end, 5 * SLOW)
  end)

  it("cuts a hook short when its client goes away: the call-out is cancelled at once", function()
    local H = require "h2_support"
    local base = g:metric("tinysse_hook_waits_abandoned_total") or 0
    local before = backend.stats().abandoned
    local function waiting(n, what)
      T.wait_until(what, function() return g:metric("tinysse_hooks_waiting") == n end, 2 * SLOW)
    end
    -- HTTP/1.1: the connection closes while validate_token waits (the
    -- call-out would run to --hook-wall-timeout, 3 s)
    local c = open_raw(g, "/events?token=hang30:cut1")
    waiting(1, "the hook to wait")
    c:close()
    local t0 = socket.gettime()
    waiting(0, "the hook to be dropped")
    assert.is_true(socket.gettime() - t0 < 1.5 * SLOW, "dropped only after " .. (socket.gettime() - t0) .. " s")
    -- HTTP/2: a stream reset, then a whole connection closed, mid-wait
    local h = H.h2connect(g.port)
    local sid = h:get("/events?token=hang30:cut2")
    waiting(1, "the HTTP/2 stream's hook to wait")
    h:rst(sid)
    waiting(0, "the reset stream's hook to be dropped")
    h:get("/events?token=hang30:cut3")
    waiting(1, "the next one to wait")
    h:close()
    waiting(0, "the closed connection's hook to be dropped")
    assert.are.equal(base + 3, g:metric("tinysse_hook_waits_abandoned_total"))
    -- the backend saw each call-out's connection go (it never answered)
    T.wait_until("the backend to see 3 call-outs abandoned", function()
      return backend.stats().abandoned >= before + 3
    end, 2 * SLOW)
    -- and the gateway goes on
    local s = g:stream("/events?token=ok:after-cut")
    assert.are.equal(200, s.status)
    s:close()
  end)

  it("holds HTTP/2 streams while their hooks wait, and survives resets and closes mid-wait", function()
    local H = require "h2_support"
    local c = H.h2connect(g.port)
    local waiting = c:get("/events?token=delay400:h2a", nil, { window = 1 << 20 })
    local reset = c:get("/events?token=delay400:h2b")
    local fast = c:get("/events?token=ok:h2c", nil, { window = 1 << 20 })
    c:await("the fast stream's 200", function() return c.streams[fast].got_headers end)
    assert.is_true(c.streams[fast].status200)
    assert.is_nil(c.streams[waiting].got_headers, "the waiting stream was answered before its hook ended")
    c:rst(reset)
    c:await("the waiting stream's 200", function() return c.streams[waiting].got_headers end)
    assert.is_true(c.streams[waiting].status200)
    -- a whole connection that goes away while its stream's hook waits
    local gone = H.h2connect(g.port)
    gone:get("/events?token=delay300:h2gone")
    socket.sleep(0.05)
    gone:close()
    c:close()
    T.wait_until("the abandoned hooks to end", function()
      return g:metric("tinysse_hooks_waiting") == 0
    end, 5 * SLOW)
    local s = g:stream("/events?token=ok:after-h2")
    assert.are.equal(200, s.status)
    s:close()
  end)

  it("takes the token from --token-cookie and gives the hooks req.cookies", function()
    local s = g:stream("/events", { Cookie = "theme=dark; sid=ok:cookie1; role=editor",
                                    Origin = "http://app.example" })
    assert.are.equal(200, s.status)
    assert.are.equal("http://app.example", s.headers["access-control-allow-origin"])
    assert.are.equal("true", s.headers["access-control-allow-credentials"])
    s:next(2)
    g:publish({ targets = { "role:editor" }, handler_id = 0, data = "c" })
    assert.truthy(s:message(3), "req.cookies.role was seen by validate_token")
    s:close()
    -- a query token wins over the cookie; no token at all names the cookie
    local none = g:stream("/events", { Cookie = "theme=dark" })
    assert.are.equal(401, none.status)
    assert.truthy(none.json.message:find("token cookie", 1, true))
  end)

  it("counts call-outs and waits in /metrics", function()
    assert.is_true(g:metric("tinysse_callouts_total") > 40)
    assert.is_true(g:metric("tinysse_callout_errors_total") >= 4)
    assert.is_true(g:metric("tinysse_hook_waits_total") > 40)
  end)
end)
