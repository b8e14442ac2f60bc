-- Test support for end-to-end specs: start the real build/tinysse on a
-- loopback port, talk HTTP to it over real sockets, read SSE streams.
local socket = require "socket"
local cjson = require "cjson"

local M = {}
M.root = os.getenv("TINYSSE_ROOT") or "."
M.bin = os.getenv("TINYSSE_BIN") or (M.root .. "/build/tinysse")
M.publish_key = "test-publish-key-0123456789"
-- TINYSSE_VALGRIND=1 runs every gateway under valgrind's memcheck; a spec
-- that stops one fails on any error or definite leak it reports.
M.valgrind = (os.getenv("TINYSSE_VALGRIND") or "") ~= ""

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  p:close()
  return out
end
M.sh = sh

function M.sleep(s) socket.sleep(s) end

-- Polls fn every 50 ms until it returns a true value (returned), or fails
-- naming what was awaited after timeout seconds.
function M.wait_until(what, fn, timeout)
  local deadline = socket.gettime() + (timeout or 10)
  repeat
    local v = fn()
    if v then return v end
    socket.sleep(0.05)
  until socket.gettime() > deadline
  error("timed out waiting for " .. what)
end

-- A port nobody listens on right now.
function M.free_port()
  local s = assert(socket.bind("127.0.0.1", 0))
  local _, port = s:getsockname()
  s:close()
  return tonumber(port)
end

function M.tmpdir()
  return (sh("mktemp -d /tmp/tinysse-spec.XXXXXX"):gsub("%s+$", ""))
end

function M.write_file(path, text)
  local f = assert(io.open(path, "w"))
  f:write(text)
  f:close()
end

function M.read_file(path)
  local f = io.open(path, "r")
  if not f then return "" end
  local t = f:read("a")
  f:close()
  return t
end

local Gateway = {}
Gateway.__index = Gateway

local function shell_quote(s)
  return "'" .. tostring(s):gsub("'", "'\\''") .. "'"
end

-- Starts the gateway. opts: script (path), args (list), env (table),
-- port, wait (default true), open_files (its ulimit -n).
function M.start(opts)
  opts = opts or {}
  local g = setmetatable({}, Gateway)
  g.port = opts.port or M.free_port()
  g.dir = opts.dir or M.tmpdir()
  g.log = g.dir .. "/gateway.log"
  g.key = opts.key == nil and M.publish_key or opts.key
  local args = { "--listen", "127.0.0.1:" .. g.port,
                 "--script", opts.script or (M.root .. "/spec/e2e/scripts/test.lua"),
                 "--workers", tostring(opts.workers or os.getenv("TINYSSE_TEST_WORKERS") or 1) }
  if g.key and g.key ~= false and g.key ~= "" then
    args[#args + 1] = "--publish-key"; args[#args + 1] = g.key
  end
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  -- TINYSSE_TEST_ARGS: options added to every gateway a spec starts (.ci/test
  -- runs the end-to-end specs once more with --no-io-uring)
  for a in (os.getenv("TINYSSE_TEST_ARGS") or ""):gmatch("%S+") do args[#args + 1] = a end
  local env = ""
  for k, v in pairs(opts.env or {}) do env = env .. k .. "=" .. shell_quote(v) .. " " end
  local cmd = {}
  for _, a in ipairs(args) do cmd[#cmd + 1] = shell_quote(a) end
  local prefix = ""
  if M.valgrind then
    g.vglog = g.dir .. "/valgrind.log"
    prefix = "valgrind -q --leak-check=full --errors-for-leak-kinds=definite " ..
             "--log-file=" .. shell_quote(g.vglog) .. " "
  end
  local limit = opts.open_files and ("ulimit -n " .. math.tointeger(opts.open_files) .. "; ") or ""
  local line = string.format("%s%s exec %s%s %s >>%s 2>&1 & echo $!", limit, env, prefix,
                             shell_quote(M.bin), table.concat(cmd, " "), shell_quote(g.log))
  g.pid = tonumber((sh("sh -c " .. shell_quote(line)):gsub("%s+$", "")))
  assert(g.pid, "could not start " .. M.bin)
  if opts.wait ~= false then
    local ok = g:wait_ready(10)
    if not ok then
      local log = M.read_file(g.log)
      g:kill()
      error("gateway did not become ready; its log:\n" .. log)
    end
  end
  return g
end

function Gateway:alive()
  return sh("kill -0 " .. self.pid .. " 2>/dev/null && echo yes") ~= ""
end

function Gateway:wait_ready(timeout)
  local deadline = socket.gettime() + timeout
  while socket.gettime() < deadline do
    if not self:alive() then return false end
    local st = self:request("GET", "/healthz")
    if st == 200 then return true end
    socket.sleep(0.05)
  end
  return false
end

function Gateway:signal(sig)
  sh("kill -" .. sig .. " " .. self.pid .. " 2>/dev/null")
end

-- Sends SIGTERM and waits; returns true when it exited in time.
-- Sanitizer reports in the gateway's log fail the spec that stopped it.
function Gateway:check_sanitizers()
  if self.vglog then
    -- run with -q: anything but warnings in its log is an error report
    local vg = M.read_file(self.vglog)
    for line in vg:gmatch("[^\n]+") do
      local text = line:gsub("^==%d+==%s*", "")
      if text ~= "" and not text:find("^Warning:") then
        error("valgrind reports errors for the gateway:\n" .. vg)
      end
    end
  end
  local log = self:logtext()
  for _, pat in ipairs({ "ERROR: AddressSanitizer", "ERROR: LeakSanitizer", "runtime error:" }) do
    if log:find(pat, 1, true) then error("sanitizer report in the gateway log:\n" .. log) end
  end
end

function Gateway:stop(timeout)
  self:signal("TERM")
  local deadline = socket.gettime() + (timeout or 10)
  while socket.gettime() < deadline do
    if not self:alive() then
      self:check_sanitizers()
      return true
    end
    socket.sleep(0.05)
  end
  self:signal("KILL")
  return false
end

function Gateway:kill()
  self:signal("KILL")
  local deadline = socket.gettime() + 5
  while self:alive() and socket.gettime() < deadline do socket.sleep(0.02) end
end

function Gateway:logtext() return M.read_file(self.log) end

local function read_response(c)
  local line, err = c:receive("*l")
  if not line then return nil, err end
  local status = tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  local headers = {}
  while true do
    local h = c:receive("*l")
    if not h or h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.*)$")
    if k then headers[k:lower()] = v end
  end
  local body
  if headers["content-length"] then
    body = c:receive(tonumber(headers["content-length"]))
  elseif headers["transfer-encoding"] == "chunked" then
    local parts = {}
    while true do
      local sz = tonumber((c:receive("*l") or "0"), 16) or 0
      if sz == 0 then c:receive("*l") break end
      parts[#parts + 1] = c:receive(sz)
      c:receive("*l")
    end
    body = table.concat(parts)
  else
    body = c:receive("*a")
  end
  return status, headers, body
end
M.read_response = read_response

local function build_request(self, method, path, headers, body)
  local lines = { method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1:" .. self.port }
  headers = headers or {}
  for k, v in pairs(headers) do lines[#lines + 1] = k .. ": " .. v end
  if body then lines[#lines + 1] = "Content-Length: " .. #body end
  return table.concat(lines, "\r\n") .. "\r\n\r\n" .. (body or "")
end
Gateway.build_request = build_request

-- Socket timeout: 5 s, or 20 s under valgrind (which runs the gateway some
-- 30 times slower: a hook that fills its 32 MiB memory cap takes ~5 s there).
function Gateway:connect(timeout, source)
  local c = socket.tcp()
  c:settimeout(timeout or (M.valgrind and 20 or 5))
  if source then assert(c:bind(source, 0)) end
  local ok, err = c:connect("127.0.0.1", self.port)
  if not ok then return nil, err end
  return c
end

-- With spec/e2e/scripts/publishing.lua: runs tinysse.publish from the
-- script `times` times (data to channel ch under key) and returns the list
-- of {ok, res} it reports, res an id or an error.
function Gateway:script_publish(ch, key, data, times)
  local status, _, body, json = self:request("POST", "/auth/sse-token", {
    ["X-Channel"] = ch, ["X-Idem-Key"] = key, ["X-Data"] = data, ["X-Times"] = tostring(times or 1) })
  assert(status == 200, body)
  return cjson.decode(json.token)
end

-- Streams on channel "all" (the gateway's view), polled until there are
-- `want` or `timeout` seconds passed (3, 10 under valgrind); returns the
-- last count seen.
function Gateway:subscribers(want, timeout)
  local n
  local deadline = socket.gettime() + (timeout or (M.valgrind and 10 or 3))
  repeat
    local _, _, _, j = self:request("GET", "/channels?channel=all", { Authorization = "Bearer " .. self.key })
    n = j and j.subscribers
    if n == want then return n end
    M.sleep(0.05)
  until socket.gettime() > deadline
  return n
end

-- The value of an unlabelled counter or gauge in /metrics (nil if absent).
function Gateway:metric(name)
  local _, _, body = self:request("GET", "/metrics")
  return tonumber((body or ""):match("\n" .. name:gsub("[%^%$%(%)%%%.%[%]%*%+%-%?]", "%%%0") .. " (%d+)"))
end

-- One request on a fresh connection. Returns status, headers, body, json.
function Gateway:request(method, path, headers, body)
  local c = self:connect()
  if not c then return nil end
  headers = headers or {}
  headers["Connection"] = headers["Connection"] or "close"
  c:send(build_request(self, method, path, headers, body))
  local status, h, b = read_response(c)
  c:close()
  local ok, j = pcall(cjson.decode, b or "")
  return status, h, b, ok and j or nil
end

function Gateway:publish(msg, key)
  local body = type(msg) == "string" and msg or cjson.encode(msg)
  local headers = { ["Content-Type"] = "application/json" }
  key = key == nil and self.key or key
  if key then headers["Authorization"] = "Bearer " .. key end
  return self:request("POST", "/publish", headers, body)
end

-- An SSE stream reader.
local Stream = {}
Stream.__index = Stream

function Gateway:stream(path, headers, source)
  local c = assert(self:connect(nil, source))
  headers = headers or {}
  headers["Accept"] = "text/event-stream"
  c:send(build_request(self, "GET", path, headers))
  local line = c:receive("*l")
  local s = setmetatable({ sock = c, headers = {}, buf = "", events = {} }, Stream)
  s.status = line and tonumber(line:match("^HTTP/1%.%d (%d%d%d)"))
  while true do
    local h = c:receive("*l")
    if not h or h == "" then break end
    local k, v = h:match("^([^:]+):%s*(.*)$")
    if k then s.headers[k:lower()] = v end
  end
  if s.status ~= 200 then
    local n = tonumber(s.headers["content-length"] or "0")
    s.body = n > 0 and c:receive(n) or ""
    local ok, j = pcall(cjson.decode, s.body)
    s.json = ok and j or nil
    c:close()
  end
  return s
end

-- Parses complete events out of the buffer (WHATWG rules, LF endings).
function Stream:_parse()
  while true do
    local i, j = self.buf:find("\n\n", 1, true)
    if not i then return end
    local block = self.buf:sub(1, i)
    self.buf = self.buf:sub(j + 1)
    local ev = { data = {}, comments = {} }
    for line in block:gmatch("([^\n]*)\n") do
      if line:sub(1, 1) == ":" then
        ev.comments[#ev.comments + 1] = line
      else
        local field, value = line:match("^([^:]*):? ?(.*)$")
        if field == "data" then ev.data[#ev.data + 1] = value
        elseif field == "id" then ev.id = value
        elseif field == "event" then ev.event = value
        elseif field == "retry" then ev.retry = tonumber(value) end
      end
    end
    ev.raw = block
    if #ev.data > 0 then
      ev.text = table.concat(ev.data, "\n")
      local ok, j = pcall(cjson.decode, ev.text)
      ev.json = ok and j or nil
    end
    self.events[#self.events + 1] = ev
  end
end

-- Next event (including comment-only and retry blocks) within timeout
-- seconds, or nil, "timeout" | "closed".
function Stream:next(timeout)
  local deadline = socket.gettime() + (timeout or 3)
  while true do
    if #self.events > 0 then return table.remove(self.events, 1) end
    if self.closed then return nil, "closed" end
    local left = deadline - socket.gettime()
    if left <= 0 then return nil, "timeout" end
    -- wait until readable, then take whatever has arrived (receive(n)
    -- alone would block until n bytes came)
    socket.select({ self.sock }, nil, left)
    self.sock:settimeout(0)
    local data, err, partial = self.sock:receive(65536)
    data = data or partial
    if err == "timeout" then err = nil end
    if data and #data > 0 then
      self.buf = self.buf .. data
      self:_parse()
    end
    if err == "closed" then self.closed = true end
  end
end

-- Next event carrying data or a named event (skips retry/ping blocks).
function Stream:message(timeout)
  local deadline = socket.gettime() + (timeout or 3)
  while true do
    local ev, err = self:next(math.max(0, deadline - socket.gettime()))
    if not ev then return nil, err end
    if ev.text or ev.event then return ev end
  end
end

-- A stream request that was shed for capacity or readiness: 200
-- text/event-stream, a retry: block, one tinysse.busy event, then the close.
-- Returns the busy event's data (a table) and the retry value, or nil and
-- what was wrong.
function Stream:busy(timeout)
  if self.status ~= 200 then return nil, "status " .. tostring(self.status) end
  if not (self.headers["content-type"] or ""):find("^text/event%-stream") then
    return nil, "content-type " .. tostring(self.headers["content-type"])
  end
  local first = self:next(timeout)
  if not first or not first.retry then return nil, "no retry: block first" end
  local busy = self:message(timeout)
  if not busy or busy.event ~= "tinysse.busy" or not busy.json then
    return nil, "no tinysse.busy event"
  end
  if busy.id then return nil, "the busy event carries an id" end
  local _, why = self:next(timeout)
  if why ~= "closed" then return nil, "not closed after tinysse.busy" end
  return busy.json, first.retry
end

-- All messages that arrive within `quiet` seconds of each other.
function Stream:drain(quiet)
  local out = {}
  while true do
    local ev = self:message(quiet or 0.3)
    if not ev then return out end
    out[#out + 1] = ev
  end
end

function Stream:close()
  if self.sock then self.sock:close() end
  self.closed = true
end

-- A private redis-server on a loopback port (cluster specs). opts.dir keeps
-- its append-only file, so a restart on the same dir and port keeps the data.
local Redis = {}
Redis.__index = Redis

-- Starts the test backend (spec/fault/backend.c, $TINYSSE_BACKEND) in dir:
-- {url, port, get(path) -> status, body, stats() -> its /stats, stop()}.
function M.start_backend(dir, jwks_file)
  local bin = assert(os.getenv("TINYSSE_BACKEND"), "TINYSSE_BACKEND is not set (ctest sets it)")
  local out = dir .. "/backend.out"
  local cmd = string.format("%s --port 0 --max-seconds 600 %s > %s 2>&1 & echo $!", bin,
                            jwks_file and ("--jwks-file " .. jwks_file) or "", out)
  local pid = tonumber((sh(cmd):gsub("%s+$", "")))
  local port
  M.wait_until("the backend to listen", function()
    port = tonumber((M.read_file(out) or ""):match("port=(%d+)"))
    return port ~= nil
  end, 5)
  local b = { port = port, pid = pid, url = "http://127.0.0.1:" .. port }
  function b.get(path)
    local c = socket.tcp()
    c:settimeout(5)
    assert(c:connect("127.0.0.1", port))
    c:send("GET " .. path .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    local status, _, body = M.read_response(c)
    c:close()
    return status, body
  end
  function b.stats()
    local _, body = b.get("/stats")
    return cjson.decode(body)
  end
  function b.stop() sh("kill " .. pid .. " 2>/dev/null") end
  return b
end

function M.start_redis(opts)
  opts = opts or {}
  local r = setmetatable({ port = opts.port or M.free_port(), dir = opts.dir or M.tmpdir() }, Redis)
  local line = string.format("exec redis-server --bind 127.0.0.1 --port %d --dir %s --save '' " ..
                             "--appendonly yes --appendfsync always --daemonize no " ..
                             ">>%s/redis.log 2>&1 & echo $!", r.port, shell_quote(r.dir), shell_quote(r.dir))
  r.pid = tonumber((sh("sh -c " .. shell_quote(line)):gsub("%s+$", "")))
  assert(r.pid, "could not start redis-server")
  local deadline = socket.gettime() + 10
  while socket.gettime() < deadline do
    if r:cli("PING") == "PONG" then return r end
    socket.sleep(0.05)
  end
  error("redis-server did not start; its log:\n" .. M.read_file(r.dir .. "/redis.log"))
end

-- Runs one redis-cli command; returns its output without the last newline.
function Redis:cli(...)
  local args = {}
  for _, a in ipairs({ ... }) do args[#args + 1] = shell_quote(a) end
  return (sh(string.format("redis-cli -p %d %s 2>&1", self.port, table.concat(args, " "))):gsub("\n$", ""))
end

function Redis:url(userinfo)
  return "redis://" .. (userinfo and (userinfo .. "@") or "") .. "127.0.0.1:" .. self.port
end

function Redis:stop()
  sh("kill -TERM " .. self.pid .. " 2>/dev/null")
  local deadline = socket.gettime() + 10
  while socket.gettime() < deadline do
    if sh("kill -0 " .. self.pid .. " 2>/dev/null && echo yes") == "" then return true end
    socket.sleep(0.05)
  end
  sh("kill -KILL " .. self.pid .. " 2>/dev/null")
  return false
end

M.json = cjson
return M
