-- Faults: streams through spec/fault/faultproxy.c, a loopback TCP proxy that
-- adds latency and jitter, cuts writes into tiny segments, resets connections
-- mid-stream and stalls a reader (this kernel has no netem). Clients that
-- resume with their last id must end with every message once and in order (or
-- an explicit tinysse.reset); a stalled reader is closed as slow without
-- holding up anyone else.
local T = require "support"
local socket = require "socket"

local PROXY = os.getenv("TINYSSE_FAULTPROXY") or (T.root .. "/build/spec/faultproxy")

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end

local Proxy = {}
Proxy.__index = Proxy

-- Starts the proxy in front of gateway g with the given options.
local function start_proxy(g, args)
  local p = setmetatable({ port = T.free_port() }, Proxy)
  p.log = g.dir .. "/faultproxy-" .. p.port .. ".log"
  local cmd = { PROXY, "--listen", p.port, "--upstream", g.port }
  for _, a in ipairs(args) do cmd[#cmd + 1] = a end
  for i, a in ipairs(cmd) do cmd[i] = quote(a) end
  local line = string.format("exec %s >%s 2>&1 & echo $!", table.concat(cmd, " "), quote(p.log))
  p.pid = tonumber((T.sh("sh -c " .. quote(line)):gsub("%s+$", "")))
  assert(p.pid, "could not start " .. PROXY)
  local deadline = socket.gettime() + 10
  while not p:logtext():find("event=listening", 1, true) do
    if socket.gettime() > deadline or not p:alive() then
      p:stop()
      error("faultproxy did not start; its log:\n" .. p:logtext())
    end
    T.sleep(0.02)
  end
  return p
end

function Proxy:logtext() return T.read_file(self.log) end
function Proxy:alive() return T.sh("kill -0 " .. self.pid .. " 2>/dev/null && echo yes") ~= "" end

-- How many faults of this kind (reset, stall) it has logged.
function Proxy:faults(kind)
  local _, n = self:logtext():gsub("event=fault kind=" .. kind .. " ", "")
  return n
end

function Proxy:stop()
  T.sh("kill -TERM " .. self.pid .. " 2>/dev/null")
  local deadline = socket.gettime() + 5
  while self:alive() and socket.gettime() < deadline do T.sleep(0.02) end
  if self:alive() then T.sh("kill -KILL " .. self.pid .. " 2>/dev/null") end
end

-- A stream reader that reconnects after every close or reset, resuming with
-- Last-Event-ID, and checks message numbers (payload {"n":N}) and ids as they
-- come: ids[n] is the id the publish of message n was answered with.
local Reader = {}
Reader.__index = Reader

local function new_reader(index, port, start_id, ids)
  return setmetatable({ index = index, port = port, last_id = start_id, ids = ids, expect = 1,
                        dups = 0, gaps = 0, wrong_ids = 0, bad_status = 0, resets = 0,
                        connects = 0, retry_at = 0, buf = "" }, Reader)
end

function Reader:connect()
  local s = socket.tcp()
  s:settimeout(2)
  if not s:connect("127.0.0.1", self.port) then
    s:close()
    self.retry_at = socket.gettime() + 0.05
    return
  end
  s:send(string.format("GET /events?token=fault%d:user HTTP/1.1\r\nHost: 127.0.0.1\r\n" ..
                       "Accept: text/event-stream\r\nLast-Event-ID: %s\r\n\r\n", self.index, self.last_id))
  s:settimeout(0)
  self.sock, self.buf, self.open = s, "", false
  self.connects = self.connects + 1
end

-- Closed or reset: whatever was cut off is dropped; back in 0-100 ms.
function Reader:drop()
  self.sock:close()
  self.sock = nil
  self.retry_at = socket.gettime() + math.random() * 0.1
end

function Reader:on_event(block)
  local id = block:match("^id: ([^\n]*)") or block:match("\nid: ([^\n]*)")
  local event = block:match("^event: ([^\n]*)") or block:match("\nevent: ([^\n]*)")
  if id then self.last_id = id end
  if event == "tinysse.reset" then
    self.resets = self.resets + 1
    self.expect = nil -- explicit loss: the next message starts afresh
    return
  end
  local n = tonumber(block:match('"data":{"n":(%d+)}'))
  if not n then return end
  if id ~= self.ids[n] then self.wrong_ids = self.wrong_ids + 1 end
  if self.expect == nil or n == self.expect then
    self.expect = n + 1
  elseif n < self.expect then
    self.dups = self.dups + 1
  else
    self.gaps = self.gaps + 1
    self.expect = n + 1
  end
end

-- Takes what arrived; returns false when the connection is gone.
function Reader:read()
  local data, err, partial = self.sock:receive(65536)
  data = data or partial
  if data and #data > 0 then
    self.buf = self.buf .. data
    if not self.open then
      local _, j = self.buf:find("\r\n\r\n", 1, true)
      if j then
        if not self.buf:find("^HTTP/1%.1 200 ") then self.bad_status = self.bad_status + 1 end
        self.buf = self.buf:sub(j + 1)
        self.open = true
      end
    end
    while self.open do
      local i, j = self.buf:find("\n\n", 1, true)
      if not i then break end
      self:on_event(self.buf:sub(1, i))
      self.buf = self.buf:sub(j + 1)
    end
  end
  return err == nil or err == "timeout"
end


describe("faults", function()
  it("resumes through latency, tiny segments and random resets with every message once, in order", function()
    local g = T.start()
    local proxy
    finally(function()
      if proxy then proxy:stop() end
      if g:alive() then g:kill() end
    end)
    proxy = start_proxy(g, { "--latency-ms", "5", "--jitter-ms", "20", "--segment", "7",
                             "--reset-prob", "0.02", "--seed", "7", "--max-seconds", "250" })
    -- under valgrind the gateway is ~20x slower: fewer clients and messages
    local clients, messages, rate, limit = 20, 500, 50, 90
    if T.valgrind then clients, messages, rate, limit = 8, 120, 8, 200 end
    math.randomseed(7)
    -- every reader starts from message 0's id, so even one reset before its
    -- first message has an id to resume from
    local st, _, _, j = g:publish({ targets = { "all" }, handler_id = 0, data = { n = 0 } })
    assert.are.equal(200, st)
    local ids = { [0] = j.id }
    local readers = {}
    for i = 1, clients do readers[i] = new_reader(i, proxy.port, j.id, ids) end

    local published, next_pub = 0, socket.gettime()
    local deadline = socket.gettime() + limit
    local function done()
      if published < messages then return false end
      for _, r in ipairs(readers) do
        if r.expect ~= messages + 1 then return false end
      end
      return true
    end
    while not done() and socket.gettime() < deadline do
      local now = socket.gettime()
      if published < messages and now >= next_pub then
        local n = published + 1
        local pst, _, body, pj = g:publish({ targets = { "all" }, handler_id = 0, data = { n = n } })
        assert.are.equal(200, pst, body)
        ids[n], published = pj.id, n
        next_pub = next_pub + 1 / rate
      end
      local socks, owner = {}, {}
      for _, r in ipairs(readers) do
        if not r.sock and now >= r.retry_at then r:connect() end
        if r.sock then
          socks[#socks + 1] = r.sock
          owner[r.sock] = r
        end
      end
      local readable = socket.select(socks, nil, 0.005)
      for _, s in ipairs(readable) do
        local r = owner[s]
        if not r:read() then r:drop() end
      end
    end
    for _, r in ipairs(readers) do
      if r.sock then r:drop() end
    end

    local sum = { connects = 0, dups = 0, gaps = 0, wrong_ids = 0, bad_status = 0, resets = 0, incomplete = 0 }
    local report = {}
    for _, r in ipairs(readers) do
      for k in pairs(sum) do sum[k] = sum[k] + (r[k] or 0) end
      if r.expect ~= messages + 1 then sum.incomplete = sum.incomplete + 1 end
      report[#report + 1] = string.format("reader %d: connects=%d expect=%s dups=%d gaps=%d wrong_ids=%d resets=%d",
                                          r.index, r.connects, tostring(r.expect), r.dups, r.gaps, r.wrong_ids, r.resets)
    end
    local injected = proxy:faults("reset")
    print(string.format("faults: clients=%d messages=%d published=%d injected_resets=%d connects=%d " ..
                        "tinysse_resets=%d duplicates=%d gaps=%d wrong_ids=%d incomplete=%d replayed=%s",
                        clients, messages, published, injected, sum.connects, sum.resets, sum.dups, sum.gaps,
                        sum.wrong_ids, sum.incomplete, tostring(g:metric("tinysse_replayed_messages_total"))))
    local detail = table.concat(report, "\n")
    assert.are.equal(messages, published)
    assert.are.same({ dups = 0, gaps = 0, wrong_ids = 0, bad_status = 0, incomplete = 0 },
                    { dups = sum.dups, gaps = sum.gaps, wrong_ids = sum.wrong_ids, bad_status = sum.bad_status,
                      incomplete = sum.incomplete }, detail)
    -- the test proves something only if streams were really cut
    assert.is_true(injected >= clients / 2, "too few resets injected: " .. injected)
    assert.is_true(sum.connects >= clients + injected / 2, detail)
    assert.is_true(g:metric("tinysse_replayed_messages_total") > 0)
    proxy:stop()
    assert.is_true(g:stop())
  end)

  it("closes a stalled reader as slow while the others get every message during the stall", function()
    local g = T.start({ args = { "--max-queue", "65536" } })
    local proxy, direct, stalled = nil, {}, nil
    finally(function()
      for _, s in ipairs(direct) do s:close() end
      if stalled then stalled:close() end
      if proxy then proxy:stop() end
      if g:alive() then g:kill() end
    end)
    -- the stall starts right after the response head and the retry block,
    -- whose length a direct probe tells
    local c = assert(g:connect(5))
    c:send(g:build_request("GET", "/events?token=probe:user", { Accept = "text/event-stream" }))
    local got = ""
    while not got:find("\r\n\r\nretry: %d+\n\n$") do
      local data, err, partial = c:receive(1)
      got = got .. (data or partial or "")
      assert(not err, err)
    end
    c:close()
    local stall_seconds = T.valgrind and 20 or 8
    proxy = start_proxy(g, { "--stall-every", "1", "--stall-after-bytes", #got, "--stall-seconds", stall_seconds,
                             "--max-seconds", "250" })

    for i = 1, 3 do
      direct[i] = g:stream("/events?token=direct" .. i .. ":user")
      assert.are.equal(200, direct[i].status)
    end
    stalled = socket.tcp()
    stalled:settimeout(5)
    assert(stalled:connect("127.0.0.1", proxy.port))
    stalled:send(g:build_request("GET", "/events?token=stalled:user", { Accept = "text/event-stream" }))
    local line = stalled:receive("*l")
    assert.are.equal("HTTP/1.1 200 OK", line)
    local deadline = socket.gettime() + 10
    while proxy:faults("stall") == 0 and socket.gettime() < deadline do T.sleep(0.02) end
    assert.are.equal(1, proxy:faults("stall"), proxy:logtext())
    -- the gateway holds the three direct streams and the stalled one (and,
    -- once it has noticed, no longer the probe)
    assert.are.equal(4, g:subscribers(4))

    -- 200 messages of 2 KB in batches, the direct readers reading in between;
    -- the proxy keeps the stalled stream's kernel buffers small (about
    -- 150 KB, see faultproxy.c), so 400 KB takes its queue past --max-queue
    local slow_before = g:metric("tinysse_slow_disconnects_total")
    local started = socket.gettime()
    local ids, seen = {}, { {}, {}, {} }
    local function read_direct(quiet)
      for i, s in ipairs(direct) do
        for _, ev in ipairs(s:drain(quiet)) do seen[i][#seen[i] + 1] = ev.id end
      end
    end
    for _ = 1, 20 do
      local batch = {}
      for k = 1, 10 do batch[k] = { targets = { "all" }, handler_id = 0, data = ("s"):rep(2000) } end
      local st, _, body, j = g:publish(T.json.encode(batch))
      assert.are.equal(200, st, body)
      for _, id in ipairs(j.ids) do ids[#ids + 1] = id end
      read_direct(0.01)
    end
    deadline = socket.gettime() + (T.valgrind and 60 or 10)
    while socket.gettime() < deadline do
      local behind = false
      for i = 1, #direct do behind = behind or #seen[i] < #ids end
      if not behind then break end
      read_direct(0.05)
    end
    -- all of it arrived while the stalled reader was still stalled
    local log = proxy:logtext()
    print(string.format("stall: %d messages reached the direct readers %.1f s into a %d s stall",
                        #ids, socket.gettime() - started, stall_seconds))
    assert.is_nil(log:find("event=stall_end", 1, true), "the stall ended before the others had every message")
    for i = 1, #direct do assert.are.same(ids, seen[i], "direct reader " .. i) end
    assert.are.equal(slow_before + 1, g:metric("tinysse_slow_disconnects_total"))
    assert.are.equal(3, g:subscribers(3))

    -- once the stall ends the stalled reader gets what the kernel held, in
    -- order from the first message, then the close
    local rest, err = "", nil
    stalled:settimeout(stall_seconds + 10)
    while not err do
      local data, e, partial = stalled:receive(65536)
      rest, err = rest .. (data or partial or ""), e
    end
    assert.are.equal("closed", err)
    local k = 0
    for id in rest:gmatch("\nid: ([^\n]+)\n") do
      k = k + 1
      assert.are.equal(ids[k], id)
    end
    assert.is_true(k > 0 and k < #ids, "the stalled reader got " .. k .. " messages of " .. #ids)
    proxy:stop()
    assert.is_true(g:stop())
  end)
end)
