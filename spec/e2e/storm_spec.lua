-- Reconnect storms: a burst of stream connects, all at once, from one
-- address and from four, against a gateway with default limits. Every
-- connection must get its stream (no 503, no busy, no close) and every
-- stream must receive a message published after the burst. The client is
-- tinysse_storm (bench/storm.c); no timing is asserted (bench/storm measures).
local T = require "support"

local STORM = os.getenv("TINYSSE_STORM") or (T.root .. "/build/tinysse_storm")
-- Under valgrind or sanitizers the gateway is many times slower: fewer
-- connects (1,500 from one address, 1,100 per address from four), still above
-- the 1,024 other connections one address may hold (--max-connections-per-peer),
-- against which the old gateway also counted streams whose request it had not
-- read yet.
local slow = T.valgrind or (os.getenv("TINYSSE_SANITIZED") or "") ~= ""

-- The open-files limit the gateway and the client can raise themselves to.
local hard = tonumber(T.sh("ulimit -Hn"):match("%d+")) or 1048576
-- What a burst of n needs besides its streams: the gateway's reserve (stdio,
-- per-worker descriptors, answered refusals: about 100) and the client's (16),
-- with room to spare.
local function fits(n) return n + 400 <= hard end

local function thousands(n)
  return (tostring(n):reverse():gsub("(%d%d%d)", "%1,"):reverse():gsub("^,", ""))
end

local function storm(g, n, sources, msg)
  local out = T.sh(string.format("%s --port %d -n %d --sources %d --timeout %d " ..
                                 "--expect-message %s --publish-key %s 2>&1",
                                 STORM, g.port, n, sources, slow and 240 or 60, msg, g.key))
  local line = out:match("\nSTORM ([^\n]*)") or out:match("^STORM ([^\n]*)")
  assert(line, "no STORM line from " .. STORM .. ":\n" .. out)
  local r = {}
  for k, v in line:gmatch("(%S+)=(%S+)") do r[k] = tonumber(v) or v end
  return r, out
end

local function burst(n, sources)
  -- every descriptor the machine allows, as an operator would give it
  local g = T.start({ open_files = math.min(hard, 1048576) })
  finally(function() if g:alive() then g:kill() end end) -- even when a check fails
  local before = g:metric("tinysse_deliveries_total")
  local msg = "storm-" .. n .. "-" .. sources .. "-" .. math.random(1e9)
  local r, out = storm(g, n, sources, msg)
  local keys = { "settled", "streaming", "shed", "refused", "closed", "connect_failed",
                 "dropped", "pending", "publish_status", "received", "missing" }
  local got = {}
  for _, k in ipairs(keys) do got[k] = r[k] end
  -- what the gateway saw, for a failure's message: its refusals past
  -- --max-connections (closed at accept when too many) and its warnings
  local seen = string.format("gateway: tinysse_connections_refused_total %s; warnings:\n%s",
                             tostring(g:metric("tinysse_connections_refused_total")),
                             (g:logtext():gsub("[^\n]*level=info[^\n]*\n?", ""):sub(1, 2000)))
  assert.are.same({ settled = 1, streaming = n, shed = 0, refused = 0, closed = 0,
                    connect_failed = 0, dropped = 0, pending = 0, publish_status = 200,
                    received = n, missing = 0 }, got, out .. "\n" .. seen)
  -- the gateway counts the same deliveries: one per stream
  assert.are.equal(n, g:metric("tinysse_deliveries_total") - before)
  assert.is_true(g:alive())
  assert.is_true(g:stop(slow and 60 or 10))
end

describe("a reconnect storm", function()
  local n1 = slow and 1500 or 10000
  local n2 = slow and 4400 or 15000 -- (4,400: 1,100 per address)
  local note = slow and " (scaled down under valgrind/sanitizers)" or ""

  local name1 = thousands(n1) .. " stream connects at once from one address all stream" .. note
  if fits(n1) then
    it(name1, function() burst(n1, 1) end)
  else
    pending(name1 .. ": the open-files limit (" .. hard .. ") is too low")
  end

  -- 15,000 fits under this machine's 20,000 with the gateway's reserves; a
  -- lower hard limit gets what fits
  if not fits(n2) then n2 = math.max(0, hard - 400) end
  local name2 = thousands(n2) .. " stream connects at once from four addresses all stream" .. note
  if n2 > 1024 then
    it(name2, function() burst(n2, 4) end)
  else
    pending(name2 .. ": the open-files limit (" .. hard .. ") is too low")
  end
end)
