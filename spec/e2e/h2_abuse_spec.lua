-- HTTP/2 abuse is bounded (issue 14). Each attack of spec/fault/h2abuse.c (rapid reset,
-- CONTINUATION flood, HPACK bomb, SETTINGS flood, PING flood, zero-window
-- stall) floods a gateway over h2c (prior knowledge on its plain listener)
-- while a normal HTTP/1.1 SSE stream is open beside it. The attack must be
-- cut off (GOAWAY, a close, or resets, as each attack calls for), and the
-- bystander unharmed: messages published during the attack and after it
-- reach it, /healthz answers over HTTP/1.1 and over a fresh h2c connection,
-- and the gateway's peak RSS during the attack grows less than a bound.
-- Prints one line of figures per attack for the issue's closing note.
local T = require "support"
local socket = require "socket"

local H2ABUSE = os.getenv("TINYSSE_H2ABUSE") or (T.root .. "/build/spec/h2abuse")
-- peak RSS growth allowed during one attack (TINYSSE_H2ABUSE_RSS_MIB to
-- change it); not checked under valgrind, nor under AddressSanitizer,
-- whose quarantine keeps freed memory (up to 256 MiB) on purpose
local RSS_BOUND_KIB = math.tointeger(tonumber(os.getenv("TINYSSE_H2ABUSE_RSS_MIB") or "64") * 1024)
local SANITIZED = (os.getenv("TINYSSE_SANITIZED") or "") ~= ""
-- under valgrind the gateway is ~20x slower
local SLOW = T.valgrind and 10 or 1
local null = T.json.null

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

-- A field of /proc/<pid>/status in KiB (VmRSS, VmHWM).
local function status_kib(pid, field)
  return tonumber(T.read_file("/proc/" .. pid .. "/status"):match(field .. ":%s*(%d+) kB"))
end

-- Resets the peak RSS (VmHWM) of pid to its current RSS, so VmHWM later is
-- the peak of the attack alone (Linux >= 4.0). Returns false where it can't.
local function reset_peak(pid)
  local f = io.open("/proc/" .. pid .. "/clear_refs", "w")
  if not f then return false end
  local ok = f:write("5")
  return f:close() and ok ~= nil
end


-- h2abuse in the background against g: attack plus its options.
local Abuse = {}
Abuse.__index = Abuse

local function start_abuse(g, attack, args)
  local a = setmetatable({ attack = attack, out = g.dir .. "/h2abuse-" .. attack .. ".json",
                           err = g.dir .. "/h2abuse-" .. attack .. ".err" }, Abuse)
  local f = io.open(H2ABUSE)
  assert(f, "no h2abuse at " .. H2ABUSE .. " (build the h2abuse target, or set TINYSSE_H2ABUSE)")
  f:close()
  local cmd = { H2ABUSE, "--host", "127.0.0.1", "--port", g.port, "--attack", attack }
  for _, x in ipairs(args or {}) do cmd[#cmd + 1] = x end
  for i, x in ipairs(cmd) do cmd[i] = quote(x) end
  local line = string.format("exec %s >%s 2>%s & echo $!", table.concat(cmd, " "), quote(a.out), quote(a.err))
  a.pid = tonumber((T.sh("sh -c " .. quote(line)):gsub("%s+$", "")))
  assert(a.pid, "could not start " .. H2ABUSE)
  return a
end

-- It prints its one JSON line when it is done.
function Abuse:done() return T.read_file(self.out):find("\n", 1, true) ~= nil end

-- Waits for the JSON line (h2abuse always stops by itself: --seconds, then
-- --drain) and returns it decoded.
function Abuse:wait(timeout)
  T.wait_until("h2abuse --attack " .. self.attack .. " to finish", function() return self:done() end, timeout)
  local text = T.read_file(self.out)
  local ok, r = pcall(T.json.decode, text)
  assert(ok and type(r) == "table", "h2abuse printed no JSON line: " .. text .. T.read_file(self.err))
  r.text = text
  return r
end

-- Stops it if a failed check left it running.
function Abuse:kill()
  if not self:done() then T.sh("kill -KILL " .. self.pid .. " 2>/dev/null") end
end

-- A fresh h2c connection asking for /healthz with curl: "200 2", or nil
-- where curl has no HTTP/2.
local curl_h2 = T.sh("curl -V 2>/dev/null"):find("HTTP2", 1, true) ~= nil
local function h2_healthz(g)
  if not curl_h2 then return nil end
  return (T.sh(string.format("curl -sS -m %d --http2-prior-knowledge -o /dev/null -w '%%{http_code} %%{http_version}' " ..
                             "http://127.0.0.1:%d/healthz 2>&1", 5 * SLOW, g.port)):gsub("%s+$", ""))
end

-- Publishes a probe to the bystander and waits for it there; returns the
-- round trip in seconds, or nil and why.
local function probe(g, bystander, n, timeout)
  local t0 = socket.gettime()
  local st, _, body = g:publish({ targets = { "user:bystander" }, handler_id = 0, data = { probe = n } })
  if st ~= 200 then return nil, "publish answered " .. tostring(st) .. " " .. tostring(body) end
  local deadline = t0 + (timeout or 5 * SLOW)
  while true do
    local ev, err = bystander:message(math.max(0, deadline - socket.gettime()))
    if not ev then return nil, "probe " .. n .. " did not arrive: " .. tostring(err) end
    if ev.json and type(ev.json.data) == "table" and ev.json.data.probe == n then
      return socket.gettime() - t0
    end
  end
end

-- The attacks: h2abuse's options, what the gateway must do about each, extra
-- gateway options. check(r) gets h2abuse's report.
local function cut_off(r)
  assert.is_true(r.goaway or r.closed_by_server,
                 "the server neither sent GOAWAY nor closed the connection: " .. r.text)
end

local function calm_or_closed(r)
  assert.is_true(r.closed_by_server or (r.goaway and r.goaway_error == "ENHANCE_YOUR_CALM"),
                 "the server neither closed the connection nor sent GOAWAY ENHANCE_YOUR_CALM: " .. r.text)
end

local attacks = {
  {
    name = "rapid-reset", what = "HEADERS then RST_STREAM(CANCEL), new stream each time (CVE-2023-44487)",
    -- past nghttp2's burst of 1,000 resets many times over
    args = { "--count", "200000", "--seconds", tostring(10 * SLOW), "--path", "/healthz" },
    check = cut_off,
  },
  {
    name = "continuation", what = "HEADERS without END_HEADERS, then CONTINUATION forever (CVE-2024-28182)",
    args = { "--count", "200000", "--seconds", tostring(10 * SLOW) },
    check = cut_off,
  },
  {
    name = "hpack-bomb", what = "a 4,000-byte header indexed once, referenced 16,000 times a block (64 MB each)",
    -- (--drain 3: time for the resets of the last blocks to come back)
    args = { "--count", "200", "--seconds", tostring(10 * SLOW), "--drain", tostring(3 * SLOW) },
    -- The brief: GOAWAY or a close. core/h2.c's design resets each stream
    -- whose header list decodes past 4 x --max-header while HPACK goes on
    -- decoding (CPU linear in what was sent, nothing kept), as nghttpd does:
    -- bounded too, so every bomb stream reset counts as cut off (but the
    -- last, which h2abuse's deadline may have cut in the middle).
    check = function(r)
      assert.is_true(r.goaway or r.closed_by_server or (r.streams_opened > 1 and r.rst_received >= r.streams_opened - 1),
                     "the server neither sent GOAWAY, nor closed, nor reset every bomb stream: " .. r.text)
    end,
  },
  {
    name = "settings-flood", what = "SETTINGS back to back, never reading the ACKs",
    -- 10 million: their ACKs (90 MB) kept unsent would break the RSS bound
    args = { "--count", "10000000", "--seconds", tostring(10 * SLOW) },
    check = calm_or_closed,
  },
  {
    name = "ping-flood", what = "PING back to back, never reading the ACKs",
    -- 10 million: their ACKs (170 MB) kept unsent would break the RSS bound
    args = { "--count", "10000000", "--seconds", tostring(10 * SLOW) },
    check = calm_or_closed,
  },
}

-- One gateway, one bystander, one attack (in the background, probes going
-- to the bystander meanwhile), then the checks common to every attack.
-- Returns h2abuse's report.
local function run_attack(g, bystander, attack, args, during)
  local rss0 = status_kib(g.pid, "VmRSS")
  local peak_reset = reset_peak(g.pid)
  local abuse = start_abuse(g, attack, args)
  finally(function() abuse:kill() end)
  local probes, worst, n = 0, 0, 0
  if during then during(abuse) end
  while not abuse:done() do
    n = n + 1
    local took, why = probe(g, bystander, n)
    assert(took, why)
    probes, worst = probes + 1, math.max(worst, took)
    T.sleep(0.1)
  end
  local r = abuse:wait(30 * SLOW)
  local peak = status_kib(g.pid, "VmHWM") or 0
  local grew = peak - (rss0 or 0)
  -- the figures first, so a failing run shows them too
  print(string.format("h2 abuse %s: %d frames, %d bytes in %.2f s; goaway=%s%s rst=%d closed_by_server=%s; " ..
                      "gateway peak RSS +%d KiB%s; %d probes during it, slowest %.0f ms",
                      attack, r.frames_sent, r.bytes_sent, r.seconds, tostring(r.goaway),
                      r.goaway and ("(" .. tostring(r.goaway_error) .. ")") or "", r.rst_received,
                      tostring(r.closed_by_server), grew, peak_reset and "" or " (peak not reset: since start)",
                      probes, worst * 1000))

  -- h2abuse did speak HTTP/2 to it
  assert.are.equal(null, r.error, r.text)
  assert.is_true(r.settings_received >= 1, "no SETTINGS from the gateway: " .. r.text)
  -- the bystander and the gateway are unharmed
  assert.is_true(g:alive(), "the gateway died:\n" .. g:logtext())
  local took, why = probe(g, bystander, n + 1)
  assert(took, why)
  assert.are.equal(200, (g:request("GET", "/healthz")))
  local h2 = h2_healthz(g)
  if h2 then assert.are.equal("200 2", h2) end
  -- probes during the attack: none slower than 2 s
  assert.is_true(worst < 2 * SLOW, string.format("a probe took %.2f s during %s", worst, attack))
  -- memory: the attack's peak RSS over the RSS before it
  if not T.valgrind and not SANITIZED then
    assert.is_true(grew < RSS_BOUND_KIB, string.format("the gateway's RSS grew %d KiB during %s (bound %d KiB)",
                                                       grew, attack, RSS_BOUND_KIB))
  end
  return r
end

local function start_gateway(extra)
  local args = { "--h2-max-streams", "128" }
  for _, a in ipairs(extra or {}) do args[#args + 1] = a end
  return T.start({ args = args })
end

describe("HTTP/2 abuse", function()
  for _, a in ipairs(attacks) do
    it(a.name .. " (" .. a.what .. ") is cut off; other clients unharmed, memory bounded", function()
      local g = start_gateway(a.gateway_args)
      local bystander
      finally(function()
        if bystander then bystander:close() end
        if g:alive() then g:kill() end
      end)
      bystander = g:stream("/events?token=bystander:user")
      assert.are.equal(200, bystander.status)
      assert.are.equal(1, g:subscribers(1))
      local r = run_attack(g, bystander, a.name, a.args)
      a.check(r)
      -- nothing of the attacker's is left on the gateway
      assert.are.equal(1, g:subscribers(1))
      bystander:close()
      assert.is_true(g:stop())
    end)
  end

  it("zero-window: streams that never open their window are reset as slow past --max-queue; " ..
     "the bystander keeps receiving", function()
    local streams, max_queue = 100, 65536
    local g = start_gateway({ "--max-queue", tostring(max_queue) })
    local bystander
    finally(function()
      if bystander then bystander:close() end
      if g:alive() then g:kill() end
    end)
    bystander = g:stream("/events?token=bystander:user")
    assert.are.equal(200, bystander.status)
    assert.are.equal(1, g:subscribers(1))
    local slow_before = g:metric("tinysse_slow_disconnects_total") or 0
    local ids, seen = {}, {}
    local function read_bystander(quiet)
      for _, ev in ipairs(bystander:drain(quiet)) do
        if ev.json and type(ev.json.data) == "string" then seen[#seen + 1] = ev.id end
      end
    end
    -- the streams hold for --seconds while this publishes
    local hold = 8 * SLOW
    local r = run_attack(g, bystander, "zero-window",
      { "--count", tostring(streams), "--seconds", tostring(hold), "--path", "/events?token=h2zw:user" },
      function(abuse)
        -- all of them open, on channel "all" beside the bystander
        assert.are.equal(streams + 1, g:subscribers(streams + 1, 5 * SLOW), T.read_file(abuse.out))
        -- 400 KB to every stream: past --max-queue for each of the stalled ones
        for _ = 1, 20 do
          local batch = {}
          for k = 1, 10 do batch[k] = { targets = { "all" }, handler_id = 0, data = ("z"):rep(2000) } end
          local st, _, body, j = g:publish(T.json.encode(batch))
          assert.are.equal(200, st, body)
          for _, id in ipairs(j.ids) do ids[#ids + 1] = id end
          read_bystander(0.01)
        end
        T.wait_until("the stalled streams to be closed as slow", function()
          read_bystander(0.05)
          return (g:metric("tinysse_slow_disconnects_total") or 0) >= slow_before + streams
        end, 10 * SLOW)
        -- the bystander got every message, in order, while they stalled
        T.wait_until("the bystander to have every message", function()
          read_bystander(0.05)
          return #seen >= #ids
        end, 10 * SLOW)
      end)
    assert.are.same(ids, seen)
    assert.are.equal(slow_before + streams, g:metric("tinysse_slow_disconnects_total"))
    -- every stalled stream was reset (RST_STREAM, not just the connection
    -- closed), and none got a byte of DATA: its window is 0
    assert.are.equal(streams, r.streams_opened)
    assert.is_true(r.rst_received >= streams, "not every stalled stream was reset: " .. r.text)
    assert.are.equal(0, r.data_received, r.text)
    assert.are.equal(1, g:subscribers(1))
    bystander:close()
    assert.is_true(g:stop())
  end)
end)
