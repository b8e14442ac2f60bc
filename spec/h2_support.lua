-- Test support for the TLS and HTTP/2 end-to-end specs (spec/e2e/tls_spec.lua,
-- spec/e2e/h2_spec.lua): a throw-away ECDSA P-256 certificate made with the
-- openssl CLI; a gateway with TLS on --listen and a plain --plain-listen
-- beside it; curl and nghttp run in the foreground or the background with
-- what they printed, their exit status and nghttp's frame log parsed; and a
-- tiny raw HTTP/2 client over plain TCP (h2c, prior knowledge) that writes
-- frames by hand, so a spec can choose its windows, never read a stream,
-- exceed SETTINGS_MAX_CONCURRENT_STREAMS, and see every frame in order.
local T = require "support"
local socket = require "socket"

local M = {}

-- under valgrind the gateway is ~20x slower
M.SLOW = T.valgrind and 10 or 1

local function quote(s) return "'" .. tostring(s):gsub("'", "'\\''") .. "'" end
M.quote = quote

-- Runs a shell command; returns its output (stdout and stderr) and exit status.
function M.run(cmd)
  local p = assert(io.popen(cmd .. " 2>&1; echo \"__rc=$?\""))
  local out = p:read("a")
  p:close()
  local rc = tonumber(out:match("__rc=(%d+)%s*$"))
  return (out:gsub("__rc=%d+%s*$", "")), rc
end

-- A self-signed ECDSA P-256 certificate for localhost and 127.0.0.1, written
-- to dir/<name>.crt and dir/<name>.key; returns both paths and its serial
-- (hex, as `openssl x509 -serial` prints it).
function M.make_cert(dir, name, cn)
  local crt, key = dir .. "/" .. name .. ".crt", dir .. "/" .. name .. ".key"
  local out, rc = M.run(string.format(
    "openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 " ..
    "-subj %s -addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout %s -out %s",
    quote("/CN=" .. (cn or "localhost")), quote(key), quote(crt)))
  assert(rc == 0, "openssl req failed: " .. out)
  return crt, key, M.serial_of_file(crt)
end

function M.serial_of_file(crt)
  local out = M.run("openssl x509 -noout -serial -in " .. quote(crt))
  return out:match("serial=(%x+)")
end

-- The serial and subject of the certificate a new TLS handshake on port gets.
function M.served_cert(port)
  local out = M.run(string.format(
    "timeout %d openssl s_client -connect 127.0.0.1:%d -servername localhost </dev/null 2>/dev/null | " ..
    "openssl x509 -noout -serial -subject", 10 * M.SLOW, port))
  return out:match("serial=(%x+)"), out:match("subject=([^\n]*)")
end

-- The ALPN protocol a TLS handshake offering `offer` (e.g. "h2,http/1.1")
-- ends with: the protocol, or "none".
function M.alpn(port, offer)
  local out = M.run(string.format(
    "timeout %d openssl s_client -connect 127.0.0.1:%d -alpn %s </dev/null 2>/dev/null",
    10 * M.SLOW, port, quote(offer)))
  if out:find("No ALPN negotiated", 1, true) then return "none" end
  return out:match("ALPN protocol: ([^\n]+)")
end

-- Starts a gateway with TLS on its --listen port (cert, key) and a plain
-- --plain-listen port beside it. g.port becomes the plain port, so the
-- Gateway helpers (request, publish, stream, metric) speak HTTP/1.1 there;
-- g.tls_port is the TLS one. opts as T.start's (opts.key is the publish
-- key there), plus tls_cert and tls_key (no TLS when absent: then
-- g.tls_port is nil and g.port the --listen one).
function M.start(opts)
  opts = opts or {}
  local args = {}
  local plain = opts.tls_cert and T.free_port() or nil
  if opts.tls_cert then
    args = { "--tls-cert", opts.tls_cert, "--tls-key", opts.tls_key }
    local tls = T.free_port()
    while tls == plain do tls = T.free_port() end
    opts.port = tls
    args[#args + 1] = "--plain-listen"
    args[#args + 1] = "127.0.0.1:" .. plain
  end
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  local start = {}
  for k, v in pairs(opts) do start[k] = v end
  start.tls_cert, start.tls_key = nil, nil
  start.args = args
  start.wait = false
  local g = T.start(start)
  if plain then
    g.tls_port = g.port
    g.port = plain
  end
  g.plain_port = g.port
  if opts.wait ~= false and not g:wait_ready(10 * M.SLOW) then
    local log = g:logtext()
    g:kill()
    error("gateway did not become ready; its log:\n" .. log)
  end
  return g
end

-- The value of a metric summed over its label sets (nil if absent).
function M.metric_sum(g, name)
  local _, _, body = g:request("GET", "/metrics")
  local sum
  for line in (body or ""):gmatch("[^\n]+") do
    local n, v = line:match("^([%w_]+)[^ ]* ([%d%.e%+%-]+)$")
    if n == name then sum = (sum or 0) + tonumber(v) end
  end
  return sum
end

-- Streams open on the gateway (tinysse_connections summed over workers).
function M.streams(g) return M.metric_sum(g, "tinysse_connections") or 0 end

-- Established TCP connections accepted on a local port (from /proc/net/tcp).
function M.established(port)
  local n = 0
  local hex = string.format(":%04X ", port)
  for line in T.read_file("/proc/net/tcp"):gmatch("[^\n]+") do
    local loc, st = line:match("^%s*%d+:%s+(%x+:%x+)%s+%x+:%x+%s+(%x+)")
    if loc and (loc .. " "):find(hex, 1, true) and st == "01" then n = n + 1 end
  end
  return n
end

-- ---- curl -----------------------------------------------------------------

local seq = 0
local function tmpname(dir, what)
  seq = seq + 1
  return string.format("%s/%s-%d", dir, what, seq)
end

-- One curl run in the foreground. mode: a list of curl options (e.g.
-- {"--http2", "-k"}); url; extra: more options. Returns {code, version,
-- body, headers (lower-case names), rc, err}.
function M.curl(dir, mode, url, extra)
  local body, hdr = tmpname(dir, "body"), tmpname(dir, "hdr")
  local cmd = { "timeout", tostring(15 * M.SLOW), "curl", "-sS", "-o", body, "-D", hdr,
                "-w", "%{http_code} %{http_version}" }
  for _, a in ipairs(mode) do cmd[#cmd + 1] = a end
  for _, a in ipairs(extra or {}) do cmd[#cmd + 1] = a end
  cmd[#cmd + 1] = url
  for i, a in ipairs(cmd) do cmd[i] = quote(a) end
  local out, rc = M.run(table.concat(cmd, " "))
  local r = { rc = rc, out = out, body = T.read_file(body), headers = {} }
  r.code, r.version = out:match("(%d%d%d) (%S+)%s*$")
  r.code = tonumber(r.code)
  r.err = out:match("curl: %(%d+%)[^\n]*")
  r.head = T.read_file(hdr)
  for line in r.head:gmatch("[^\r\n]+") do
    local k, v = line:match("^([^:]+):%s*(.-)%s*$")
    if k and not k:find(" ") then r.headers[k:lower()] = v end
  end
  local ok, j = pcall(T.json.decode, r.body)
  r.json = ok and type(j) == "table" and j or nil
  os.remove(body)
  os.remove(hdr)
  return r
end

-- A command in the background, bounded by `timeout` seconds: its output
-- goes to files, and :done(), :rc(), :out(), :stop() look at it.
local Bg = {}
Bg.__index = Bg

function M.background(dir, argv, seconds)
  local b = setmetatable({ outf = tmpname(dir, "bg-out"), rcf = tmpname(dir, "bg-rc"),
                           pidf = tmpname(dir, "bg-pid") }, Bg)
  local cmd = { "timeout", tostring(seconds) }
  for _, a in ipairs(argv) do cmd[#cmd + 1] = a end
  for i, a in ipairs(cmd) do cmd[i] = quote(a) end
  local inner = string.format("%s >%s 2>&1 </dev/null & echo $! >%s; wait $!; echo $? >%s",
                              table.concat(cmd, " "), quote(b.outf), quote(b.pidf), quote(b.rcf))
  os.execute("sh -c " .. quote(inner) .. " >/dev/null 2>&1 &")
  T.wait_until("a background command to start", function()
    b.pid = tonumber(T.read_file(b.pidf):match("%d+"))
    return b.pid
  end, 5)
  return b
end

function Bg:done() return T.read_file(self.rcf):find("%d") ~= nil end
function Bg:rc() return tonumber(T.read_file(self.rcf):match("%d+")) end
function Bg:out() return T.read_file(self.outf) end

-- Waits until it ended by itself; returns its exit status.
function Bg:wait(timeout)
  T.wait_until("a background command to end", function() return self:done() end, timeout)
  return self:rc()
end

-- Ends it (SIGTERM to `timeout`, which passes it on) unless it ended.
function Bg:stop()
  if self.pid and not self:done() then
    os.execute("kill -TERM " .. self.pid .. " 2>/dev/null")
    pcall(T.wait_until, "a background command to stop", function() return self:done() end, 5)
  end
end

-- curl streaming url to a file in the background: {mode...} plus extra.
function M.curl_stream(dir, mode, url, extra, seconds)
  local argv = { "curl", "-sS", "-N" }
  for _, a in ipairs(mode) do argv[#argv + 1] = a end
  for _, a in ipairs(extra or {}) do argv[#argv + 1] = a end
  argv[#argv + 1] = url
  return M.background(dir, argv, seconds or 30 * M.SLOW)
end

-- ---- nghttp -v output -------------------------------------------------------

-- Parses `nghttp -v` output into the frames it received and sent, in order,
-- each {dir = "recv"|"send", type, stream, flags, end_stream, text (for
-- received DATA: the bytes nghttp printed just before the frame line),
-- code (RST_STREAM, GOAWAY), last_stream (GOAWAY), settings (SETTINGS)}.
-- Also per-stream tables: streams[id] = {status, data, end_stream, rst}.
function M.parse_nghttp(out)
  local frames, streams = {}, {}
  local pending = {}
  local cur
  local function st(id)
    streams[id] = streams[id] or { data = "", headers = {} }
    return streams[id]
  end
  for line in (out .. "\n"):gmatch("([^\n]*)\n") do
    local dir, ftype, rest = line:match("^%[%s*[%d%.]+%] (%a+) (%u[%u_]*) frame <(.-)>")
    if dir then
      cur = { dir = dir, type = ftype, flags = tonumber(rest:match("flags=(0x%x+)")),
              stream = tonumber(rest:match("stream_id=(%d+)")), length = tonumber(rest:match("length=(%d+)")) }
      frames[#frames + 1] = cur
      if dir == "recv" and ftype == "DATA" then
        cur.text = table.concat(pending, "\n")
        local s = st(cur.stream)
        s.data = s.data .. cur.text
      end
      if dir == "recv" and (ftype == "DATA" or ftype == "HEADERS") and cur.flags & 1 == 1 then
        cur.end_stream = true
        st(cur.stream).end_stream = true
      end
      pending = {}
    elseif line:match("^%[%s*[%d%.]+%] recv %(stream_id=%d+%)") then
      local id, k, v = line:match("recv %(stream_id=(%d+)%) ([^:]*:?[^:]*): ?(.*)$")
      id = tonumber(id)
      if id then
        if k == ":status" then st(id).status = tonumber(v) end
        st(id).headers[k] = v
      end
      pending = {}
    elseif line:match("^%s+") and cur then
      local code = line:match("error_code=([%u_]+)")
      if code then cur.code = code end
      local last = line:match("last_stream_id=(%d+)")
      if last then cur.last_stream = tonumber(last) end
      local sname, sval = line:match("%[(SETTINGS_[%u_]+)%(0x%x+%):(%d+)%]")
      if sname then
        cur.settings = cur.settings or {}
        cur.settings[sname] = tonumber(sval)
      end
      if cur.type == "RST_STREAM" and code and cur.dir == "recv" then st(cur.stream).rst = code end
    elseif line:match("^%[") then
      pending = {}
    else
      pending[#pending + 1] = line
    end
  end
  return { frames = frames, streams = streams,
           unprocessed = out:match("Some requests were not processed[^\n]*") }
end

-- The SETTINGS the server sent first (a table name -> value), or nil.
function M.server_settings(parsed)
  for _, f in ipairs(parsed.frames) do
    if f.dir == "recv" and f.type == "SETTINGS" and (f.flags or 0) & 1 == 0 then return f.settings or {} end
  end
end

-- ---- a raw HTTP/2 client (h2c) ---------------------------------------------

local FRAME = { DATA = 0, HEADERS = 1, PRIORITY = 2, RST_STREAM = 3, SETTINGS = 4, PUSH_PROMISE = 5,
                PING = 6, GOAWAY = 7, WINDOW_UPDATE = 8, CONTINUATION = 9 }
local FRAME_NAME = {}
for k, v in pairs(FRAME) do FRAME_NAME[v] = k end
M.FRAME = FRAME
local ERR = { [0] = "NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR",
              "SETTINGS_TIMEOUT", "STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL",
              "COMPRESSION_ERROR", "CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY",
              "HTTP_1_1_REQUIRED" }
M.ERR = ERR
local SETTING_NAME = { [1] = "HEADER_TABLE_SIZE", [2] = "ENABLE_PUSH", [3] = "MAX_CONCURRENT_STREAMS",
                       [4] = "INITIAL_WINDOW_SIZE", [5] = "MAX_FRAME_SIZE", [6] = "MAX_HEADER_LIST_SIZE" }

-- HPACK (RFC 7541): integers, and literal fields without indexing with a
-- new name and no Huffman coding: all a request needs.
local function hpack_int(value, prefix_bits, first)
  local max = (1 << prefix_bits) - 1
  if value < max then return string.char(first | value) end
  local out = { string.char(first | max) }
  value = value - max
  while value >= 128 do
    out[#out + 1] = string.char(value % 128 + 128)
    value = value // 128
  end
  out[#out + 1] = string.char(value)
  return table.concat(out)
end

local function hpack_literal(name, value)
  return "\0" .. hpack_int(#name, 7, 0) .. name .. hpack_int(#value, 7, 0) .. value
end

local function frame(ftype, flags, sid, payload)
  payload = payload or ""
  return string.pack(">I3BBI4", #payload, ftype, flags, sid & 0x7fffffff) .. payload
end
M.frame = frame

local H2 = {}
H2.__index = H2

-- Connects to 127.0.0.1:port with prior knowledge. opts.window: the
-- INITIAL_WINDOW_SIZE this client announces (default 65535; 0 to hold every
-- stream until it gives it a window). The connection window is opened wide
-- and topped up as DATA arrives, so only stream windows hold anything back.
function M.h2connect(port, opts)
  opts = opts or {}
  local c = setmetatable({ port = port, next_sid = 1, streams = {}, log = {}, buf = "",
                           server_settings = nil, acked = false, closed = false }, H2)
  c.sock = socket.tcp()
  c.sock:settimeout(5 * M.SLOW)
  assert(c.sock:connect("127.0.0.1", port))
  c.sock:setoption("tcp-nodelay", true)
  local window = opts.window or 65535
  local settings = string.pack(">I2I4I2I4", 2, 0, 4, window)
  c:send("PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n" .. frame(FRAME.SETTINGS, 0, 0, settings) ..
         frame(FRAME.WINDOW_UPDATE, 0, 0, string.pack(">I4", (1 << 30) - 65535)))
  return c
end

function H2:send(bytes)
  self.sock:settimeout(5 * M.SLOW)
  local ok, err = self.sock:send(bytes)
  -- A failed send does not end the client: frames the server sent before
  -- it closed (END_STREAM, its last GOAWAY) may still wait in the socket,
  -- and pump reads them until the read side reports the close.
  if not ok then self.send_error = err end
  return ok, err
end

-- Opens a stream: GET path (headers: more fields, lower-case names).
-- opts.window: a WINDOW_UPDATE of that many bytes right after the request
-- and every DATA frame given back as it arrives (a stream that reads);
-- without it the stream gets only the connection's INITIAL_WINDOW_SIZE.
-- Returns the stream id.
function H2:get(path, headers, opts)
  opts = opts or {}
  local sid = self.next_sid
  self.next_sid = sid + 2
  local block = { hpack_literal(":method", "GET"), hpack_literal(":scheme", "http"),
                  hpack_literal(":authority", "127.0.0.1:" .. self.port), hpack_literal(":path", path) }
  for k, v in pairs(headers or {}) do block[#block + 1] = hpack_literal(k:lower(), v) end
  self.streams[sid] = { id = sid, data = "", headers = "", reads = opts.window ~= nil }
  local out = frame(FRAME.HEADERS, 0x1 | 0x4, sid, table.concat(block))
  if opts.window then out = out .. frame(FRAME.WINDOW_UPDATE, 0, sid, string.pack(">I4", opts.window)) end
  self:send(out)
  return sid
end

-- Gives stream sid n more bytes of window.
function H2:window_update(sid, n)
  self:send(frame(FRAME.WINDOW_UPDATE, 0, sid, string.pack(">I4", n)))
end

function H2:rst(sid, code)
  self:send(frame(FRAME.RST_STREAM, 0, sid, string.pack(">I4", code or 8)))
end

function H2:_stream(sid)
  self.streams[sid] = self.streams[sid] or { id = sid, data = "", headers = "" }
  return self.streams[sid]
end

function H2:_frame(ftype, flags, sid, payload)
  local entry = { type = FRAME_NAME[ftype] or tostring(ftype), flags = flags, stream = sid,
                  length = #payload }
  self.log[#self.log + 1] = entry
  if ftype == FRAME.SETTINGS then
    if flags & 1 == 1 then
      self.acked = true
    else
      self.server_settings = self.server_settings or {}
      for i = 1, #payload - 5, 6 do
        local id, v = string.unpack(">I2I4", payload, i)
        self.server_settings[SETTING_NAME[id] or tostring(id)] = v
      end
      self:send(frame(FRAME.SETTINGS, 1, 0, ""))
    end
  elseif ftype == FRAME.PING then
    if flags & 1 == 0 then self:send(frame(FRAME.PING, 1, 0, payload)) end
  elseif ftype == FRAME.HEADERS or ftype == FRAME.CONTINUATION then
    local s = self:_stream(sid)
    local p = payload
    if ftype == FRAME.HEADERS then
      local pad = 0
      if flags & 0x8 ~= 0 then pad = p:byte(1); p = p:sub(2) end
      if flags & 0x20 ~= 0 then p = p:sub(6) end
      if pad > 0 then p = p:sub(1, #p - pad) end
      if s.headers == "" then
        -- ":status: 200" is HPACK static entry 8, which an encoder sends as
        -- the one byte 0x88; any other status is a literal
        s.status200 = p:byte(1) == 0x88
        s.got_headers = true
      end
    end
    s.headers = s.headers .. p
    if flags & 1 == 1 then s.ended = true end
  elseif ftype == FRAME.DATA then
    local s = self:_stream(sid)
    local p = payload
    if flags & 0x8 ~= 0 then
      local pad = p:byte(1)
      p = p:sub(2, #p - pad)
    end
    s.data = s.data .. p
    entry.data = p
    if flags & 1 == 1 then s.ended = true end
    if #payload > 0 then
      local top = frame(FRAME.WINDOW_UPDATE, 0, 0, string.pack(">I4", #payload))
      if s.reads and not s.ended then
        top = top .. frame(FRAME.WINDOW_UPDATE, 0, sid, string.pack(">I4", #payload))
      end
      self:send(top)
    end
  elseif ftype == FRAME.RST_STREAM then
    local code = string.unpack(">I4", payload)
    self:_stream(sid).rst = ERR[code] or tostring(code)
    entry.code = self:_stream(sid).rst
  elseif ftype == FRAME.GOAWAY then
    local last, code = string.unpack(">I4I4", payload)
    self.goaway = { last_stream = last & 0x7fffffff, code = ERR[code] or tostring(code),
                    debug = payload:sub(9) }
    entry.code = self.goaway.code
    entry.last_stream = self.goaway.last_stream
  end
end

-- Reads and handles frames for up to `timeout` seconds, or until cond()
-- (checked after each batch) is true. Returns cond()'s value.
function H2:pump(timeout, cond)
  local deadline = socket.gettime() + (timeout or 0)
  while true do
    if cond then
      local v = cond()
      if v then return v end
    end
    if self.closed then return cond and cond() end
    local left = deadline - socket.gettime()
    if left <= 0 then return cond and cond() end
    socket.select({ self.sock }, nil, math.min(left, 0.2))
    self.sock:settimeout(0)
    local data, err, partial = self.sock:receive(65536)
    data = data or partial
    if data and #data > 0 then self.buf = self.buf .. data end
    while #self.buf >= 9 do
      local len, ftype, flags, sid = string.unpack(">I3BBI4", self.buf)
      if #self.buf < 9 + len then break end
      local payload = self.buf:sub(10, 9 + len)
      self.buf = self.buf:sub(10 + len)
      self:_frame(ftype, flags, sid & 0x7fffffff, payload)
    end
    if err and err ~= "timeout" then self.closed = true end
  end
end

-- Pumps until cond() is true or fails naming what was awaited.
function H2:await(what, cond, timeout)
  local v = self:pump(timeout or 5 * M.SLOW, cond)
  if not v then
    local frames = {}
    for i = math.max(1, #self.log - 20), #self.log do
      local f = self.log[i]
      frames[#frames + 1] = string.format("%s(stream %d, flags 0x%x%s)", f.type, f.stream, f.flags,
                                          f.code and (", " .. f.code) or "")
    end
    error("h2 client timed out waiting for " .. what .. "; last frames: " .. table.concat(frames, " ") ..
          (self.closed and " (connection closed)" or ""))
  end
  return v
end

-- How many times `needle` occurs in stream sid's data.
function H2:count(sid, needle)
  local n, i = 0, 1
  local data = self.streams[sid] and self.streams[sid].data or ""
  while true do
    local j = data:find(needle, i, true)
    if not j then return n end
    n = n + 1
    i = j + #needle
  end
end

function H2:close()
  if self.sock then self.sock:close() end
  self.closed = true
end

return M
