-- --trusted-proxy: the client address behind a proxy or load balancer, from
-- a PROXY protocol header (v1 text, v2 binary) or X-Forwarded-For, taken only
-- from trusted addresses. Seen in the access log (peer=), by hooks
-- (req.peer) and by the per-address limits.
local T = require "support"
local socket = require "socket"

local WAIT = T.valgrind and 20 or 5
local TOKEN = "/events?token=u1:admin"

-- test.lua, plus a channel naming req.peer, so a spec can ask /channels
-- what address a hook saw.
local function peer_script()
  local dir = T.tmpdir()
  local path = dir .. "/peer.lua"
  T.write_file(path, string.format([[
    local M = dofile(%q)
    local channels = M.channels
    M.channels = function(user, role, req)
      local ch = channels(user, role, req)
      ch[#ch + 1] = "peer:" .. req.peer
      return ch
    end
    return M
  ]], T.root .. "/spec/e2e/scripts/test.lua"))
  return path
end

local function wait_for(what, fn, timeout) return T.wait_until(what, fn, timeout or WAIT) end

-- The peer= of the access-log line of the answer with X-Request-Id rid.
local function logged_peer(g, rid)
  assert.truthy(rid, "no X-Request-Id")
  return wait_for("the access-log line of request " .. rid, function()
    return g:logtext():match("event=access id=" .. rid .. " [^\n]- peer=(%S+)")
  end)
end

-- Whether the access log has a stream request (200) from peer. (An
-- accepted stream's answer carries no X-Request-Id to look its line up by.)
local function stream_logged(g, peer)
  local want = 'path="/events" status=200 peer=' .. peer .. "\n"
  return wait_for("a stream from " .. peer .. " in the access log", function()
    return g:logtext():find(want, 1, true) ~= nil
  end)
end

-- How many streams a hook saw coming from peer (req.peer).
local function hook_saw(g, peer)
  local status, _, body, json = g:request("GET", "/channels?channel=peer:" .. peer,
                                          { Authorization = "Bearer " .. g.key })
  assert.equal(200, status, body)
  return json.subscribers
end

-- g, but every connection it opens first sends prefix (a PROXY header),
-- whole or in the given pieces with a pause between them. .port is the
-- local (TCP) port of the last connection.
local function via(g, prefix, pieces)
  local base = getmetatable(g).__index
  local w = {}
  w.connect = function(self, timeout, source)
    local c, err = base.connect(self, timeout, source)
    if not c then return nil, err end
    local _, lport = c:getsockname()
    w.local_port = tonumber(lport)
    if pieces then
      local at = 1
      for _, n in ipairs(pieces) do
        c:send(prefix:sub(at, at + n - 1))
        at = at + n
        T.sleep(0.1)
      end
      c:send(prefix:sub(at))
    else
      c:send(prefix)
    end
    return c
  end
  return setmetatable(w, { __index = g })
end

-- Sends raw bytes on a fresh connection; the answers as text (until the
-- gateway closes or nothing more comes).
local function raw(g, data)
  local c = assert(g:connect(WAIT))
  local _, lport = c:getsockname()
  c:send(data)
  local out, _, partial = c:receive("*a")
  c:close()
  return out or partial or "", tonumber(lport)
end

-- PROXY protocol v2.
local SIG = "\r\n\r\n\0\r\nQUIT\n"
local function v2(cmd, fam, payload)
  return SIG .. string.char(cmd, fam) .. string.pack(">I2", #payload) .. payload
end
local function ip4(s)
  local a, b, c, d = s:match("^(%d+)%.(%d+)%.(%d+)%.(%d+)$")
  return string.char(tonumber(a), tonumber(b), tonumber(c), tonumber(d))
end
local function tlv(t, v) return string.char(t) .. string.pack(">I2", #v) .. v end
local function v2_tcp4(src, dst, sport, dport, tlvs)
  return v2(0x21, 0x11, ip4(src) .. ip4(dst) .. string.pack(">I2I2", sport, dport) .. (tlvs or ""))
end
local V6_DOC7 = "\x20\x01\x0d\xb8" .. ("\0"):rep(11) .. "\x07" -- 2001:db8::7
local V6_LOOP = ("\0"):rep(15) .. "\x01"                        -- ::1

local function healthz_peer(g)
  local status, h = g:request("GET", "/healthz")
  assert.equal(200, status)
  return logged_peer(g, h["x-request-id"])
end

describe("a trusted proxy's PROXY protocol header", function()
  local g
  setup(function()
    g = T.start({ script = peer_script(),
                  args = { "--trusted-proxy", "127.0.0.1/32", "--access-log", "--hook-timeout", "5" } })
  end)
  teardown(function() if g then assert.is_true(g:stop()) end end)

  it("v1 TCP4 makes the client its source address: logs and hooks see it", function()
    local p = via(g, "PROXY TCP4 203.0.113.7 127.0.0.1 5555 8080\r\n")
    assert.equal("203.0.113.7:5555", healthz_peer(p))
    local s = p:stream(TOKEN)
    assert.equal(200, s.status)
    assert.is_true(stream_logged(g, "203.0.113.7:5555"))
    assert.equal(1, hook_saw(g, "203.0.113.7:5555"))
    -- the connection itself came from 127.0.0.1: nothing was counted there
    assert.equal(0, hook_saw(g, "127.0.0.1:" .. p.local_port))
    s:close()
  end)

  it("v1 TCP6", function()
    local p = via(g, "PROXY TCP6 2001:db8:0:0:0:0:0:7 ::1 5556 443\r\n")
    assert.equal("2001:db8::7:5556", healthz_peer(p))
    local s = p:stream(TOKEN)
    assert.equal(200, s.status)
    assert.equal(1, hook_saw(g, "2001:db8::7:5556"))
    s:close()
  end)

  it("v1 split over several packets", function()
    local p = via(g, "PROXY TCP4 203.0.113.9 127.0.0.1 6000 8080\r\n", { 3, 10, 20 })
    assert.equal("203.0.113.9:6000", healthz_peer(p))
  end)

  it("v2 binary, IPv4, without and with TLVs", function()
    local p = via(g, v2_tcp4("203.0.113.10", "127.0.0.1", 5557, 8080))
    assert.equal("203.0.113.10:5557", healthz_peer(p))
    local s = p:stream(TOKEN)
    assert.equal(200, s.status)
    assert.equal(1, hook_saw(g, "203.0.113.10:5557"))
    s:close()
    local tlvs = tlv(0x02, "sse.example.com") .. tlv(0x04, ("\0"):rep(5)) .. tlv(0x05, "unique-id-42")
    p = via(g, v2_tcp4("203.0.113.11", "10.1.2.3", 65535, 80, tlvs))
    assert.equal("203.0.113.11:65535", healthz_peer(p))
    -- and split: the signature, the rest of the header, then the request
    p = via(g, v2_tcp4("203.0.113.12", "10.1.2.3", 1, 80, tlvs), { 7, 9 })
    assert.equal("203.0.113.12:1", healthz_peer(p))
  end)

  it("v2 binary, IPv6", function()
    local p = via(g, v2(0x21, 0x21, V6_DOC7 .. V6_LOOP .. string.pack(">I2I2", 5558, 443)))
    assert.equal("2001:db8::7:5558", healthz_peer(p))
  end)

  it("v2 LOCAL (and v1 UNKNOWN) keep the TCP peer", function()
    local p = via(g, v2(0x20, 0x00, ""))
    local peer = healthz_peer(p)
    assert.equal("127.0.0.1:" .. p.local_port, peer)
    -- a LOCAL header's family and addresses are ignored
    p = via(g, v2(0x20, 0x11, ip4("203.0.113.13") .. ip4("127.0.0.1") .. string.pack(">I2I2", 1, 2)))
    peer = healthz_peer(p)
    assert.equal("127.0.0.1:" .. p.local_port, peer)
    local s = p:stream(TOKEN)
    assert.equal(200, s.status)
    assert.equal(1, hook_saw(g, "127.0.0.1:" .. p.local_port))
    s:close()
    p = via(g, "PROXY UNKNOWN\r\n")
    peer = healthz_peer(p)
    assert.equal("127.0.0.1:" .. p.local_port, peer)
  end)

  it("a trusted proxy may speak plain HTTP without a PROXY header", function()
    local status, h, _, json = g:request("GET", "/healthz")
    assert.equal(200, status)
    assert.equal("ok", json.status)
    assert.truthy(logged_peer(g, h["x-request-id"]):match("^127%.0%.0%.1:%d+$"))
    local s = g:stream(TOKEN)
    assert.equal(200, s.status)
    local peer = "127.0.0.1:" .. select(2, s.sock:getsockname())
    assert.is_true(stream_logged(g, peer))
    assert.equal(1, hook_saw(g, peer))
    s:close()
  end)

  it("names the client for every request on a keep-alive connection", function()
    local req = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
    local c = assert(g:connect(WAIT))
    c:send("PROXY TCP4 203.0.113.14 127.0.0.1 7000 8080\r\n" .. req)
    local st1, h1 = T.read_response(c)
    c:send(req)
    local st2, h2 = T.read_response(c)
    c:close()
    assert.equal(200, st1)
    assert.equal(200, st2)
    assert.equal("203.0.113.14:7000", logged_peer(g, h1["x-request-id"]))
    assert.equal("203.0.113.14:7000", logged_peer(g, h2["x-request-id"]))
  end)

  it("does not take a broken header from a trusted proxy", function()
    local out = raw(g, "PROXY TCP4 203.0.113.300 127.0.0.1 5555 8080\r\n" ..
                       "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert.falsy(out:match("^HTTP/1%.%d 200"), out)
    assert.falsy(g:logtext():find("203.0.113.300", 1, true))
  end)
end)

describe("the per-address stream limit behind a trusted proxy", function()
  local g
  setup(function()
    g = T.start({ args = { "--trusted-proxy", "127.0.0.1/32", "--max-clients-per-peer", "2",
                           "--access-log" } })
  end)
  teardown(function() if g then assert.is_true(g:stop()) end end)

  it("counts the client the PROXY header names, not the proxy", function()
    local from7 = function(port) return via(g, "PROXY TCP4 203.0.113.7 127.0.0.1 " .. port .. " 8080\r\n") end
    local a, b = from7(5555):stream(TOKEN), from7(5556):stream(TOKEN)
    assert.equal(200, a.status)
    assert.equal(200, b.status)
    -- a third from 203.0.113.7 is shed, though the TCP peer is the proxy
    local c = from7(5557):stream(TOKEN)
    local busy, retry = c:busy(WAIT)
    assert.is_table(busy, retry)
    assert.equal("max_clients_per_peer", busy.reason)
    assert.equal(1, g:metric('tinysse_shed_total{reason="max_clients_per_peer"}'))
    -- another client through the same proxy address gets its stream
    local d = via(g, "PROXY TCP4 203.0.113.8 127.0.0.1 5555 8080\r\n"):stream(TOKEN)
    assert.equal(200, d.status)
    assert.is_true(stream_logged(g, "203.0.113.8:5555"))
    -- and so does the proxy itself, speaking for itself
    local e = g:stream(TOKEN)
    assert.equal(200, e.status)
    for _, s in ipairs({ a, b, d, e }) do s:close() end
  end)

  it("counts the client X-Forwarded-For names", function()
    local xff = { ["X-Forwarded-For"] = "198.51.100.20" }
    local function open() return g:stream(TOKEN, { ["X-Forwarded-For"] = xff["X-Forwarded-For"] }) end
    local a, b = open(), open()
    assert.equal(200, a.status)
    assert.equal(200, b.status)
    assert.is_true(stream_logged(g, "198.51.100.20:0"))
    local busy = open():busy(WAIT)
    assert.is_table(busy)
    assert.equal("max_clients_per_peer", busy.reason)
    local other = g:stream(TOKEN, { ["X-Forwarded-For"] = "198.51.100.21" })
    assert.equal(200, other.status)
    for _, s in ipairs({ a, b, other }) do s:close() end
  end)
end)

describe("X-Forwarded-For from a trusted proxy", function()
  local g
  setup(function()
    g = T.start({ script = peer_script(),
                  args = { "--trusted-proxy", "127.0.0.1/32", "--trusted-proxy", "10.0.0.0/8",
                           "--access-log", "--hook-timeout", "5" } })
  end)
  teardown(function() if g then assert.is_true(g:stop()) end end)

  local function peer_with(xff)
    local status, h = g:request("GET", "/healthz", { ["X-Forwarded-For"] = xff })
    assert.equal(200, status)
    return logged_peer(g, h["x-request-id"])
  end

  -- The peer of a raw request (several X-Forwarded-For headers).
  local function peer_raw(headers)
    local out = raw(g, "GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n" .. headers .. "\r\n")
    assert.truthy(out:match("^HTTP/1%.1 200"), out)
    return logged_peer(g, out:match("\r\n[Xx]%-[Rr]equest%-[Ii]d: (%x+)\r\n"))
  end

  it("takes the right-most address that is not a trusted proxy", function()
    assert.equal("198.51.100.1:0", peer_with("198.51.100.1, 10.0.0.5"))
    local s = g:stream(TOKEN, { ["X-Forwarded-For"] = "198.51.100.1, 10.0.0.5" })
    assert.equal(200, s.status)
    assert.equal(1, hook_saw(g, "198.51.100.1:0"))
    s:close()
  end)

  it("ignores what the client wrote left of it", function()
    assert.equal("198.51.100.2:0", peer_with("1.1.1.1, 198.51.100.2"))
    assert.equal("198.51.100.2:0", peer_with("1.1.1.1,198.51.100.2,10.0.0.5,10.9.9.9"))
  end)

  it("joins several X-Forwarded-For headers in order", function()
    assert.equal("198.51.100.5:0",
                 peer_raw("X-Forwarded-For: 198.51.100.4\r\nX-Forwarded-For: 198.51.100.5, 10.0.0.9\r\n"))
    assert.equal("198.51.100.4:0",
                 peer_raw("X-Forwarded-For: 198.51.100.5, 10.0.0.9\r\nx-forwarded-for: 198.51.100.4\r\n"))
    assert.equal("198.51.100.6:0",
                 peer_raw("X-Forwarded-For: 198.51.100.6\r\nX-Forwarded-For: 10.0.0.9\r\n"))
  end)

  it("takes hops with ports or brackets, and IPv6", function()
    assert.equal("198.51.100.7:0", peer_with("198.51.100.7:4711, 10.0.0.5"))
    assert.equal("2001:db8::9:0", peer_with("[2001:db8::9]:443"))
  end)

  it("keeps the TCP peer for an unusable value", function()
    for _, xff in ipairs({ "unknown", "198.51.100.8, unknown", "" }) do
      assert.truthy(peer_with(xff):match("^127%.0%.0%.1:[1-9]%d*$"), xff)
    end
  end)

  it("is read per request on a keep-alive connection", function()
    local c = assert(g:connect(WAIT))
    c:send("GET /healthz HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.9\r\n\r\n")
    local st1, h1 = T.read_response(c)
    c:send("GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
    local st2, h2 = T.read_response(c)
    c:close()
    assert.equal(200, st1)
    assert.equal(200, st2)
    assert.equal("198.51.100.9:0", logged_peer(g, h1["x-request-id"]))
    assert.truthy(logged_peer(g, h2["x-request-id"]):match("^127%.0%.0%.1:[1-9]%d*$"))
  end)

  it("follows a PROXY header only when it names a trusted proxy", function()
    -- a load balancer (10.0.0.5, trusted) in front of another proxy
    local p = via(g, "PROXY TCP4 10.0.0.5 127.0.0.1 5000 8080\r\n")
    local status, h = p:request("GET", "/healthz", { ["X-Forwarded-For"] = "198.51.100.10" })
    assert.equal(200, status)
    assert.equal("198.51.100.10:0", logged_peer(g, h["x-request-id"]))
    -- a client's own X-Forwarded-For is its own say
    p = via(g, "PROXY TCP4 203.0.113.20 127.0.0.1 5001 8080\r\n")
    status, h = p:request("GET", "/healthz", { ["X-Forwarded-For"] = "198.51.100.11" })
    assert.equal(200, status)
    assert.equal("203.0.113.20:5001", logged_peer(g, h["x-request-id"]))
  end)
end)

describe("an untrusted peer", function()
  for _, case in ipairs({ { "without --trusted-proxy", {} },
                          { "outside --trusted-proxy 10.0.0.0/8", { "--trusted-proxy", "10.0.0.0/8" } } }) do
    describe(case[1], function()
      local g
      setup(function()
        local args = { "--access-log" }
        for _, a in ipairs(case[2]) do args[#args + 1] = a end
        g = T.start({ script = peer_script(), args = args, })
      end)
      teardown(function() if g then assert.is_true(g:stop()) end end)

      it("has its X-Forwarded-For ignored", function()
        local status, h = g:request("GET", "/healthz", { ["X-Forwarded-For"] = "198.51.100.1" })
        assert.equal(200, status)
        assert.truthy(logged_peer(g, h["x-request-id"]):match("^127%.0%.0%.1:[1-9]%d*$"))
        local s = g:stream(TOKEN, { ["X-Forwarded-For"] = "198.51.100.1" })
        assert.equal(200, s.status)
        local peer = "127.0.0.1:" .. select(2, s.sock:getsockname())
        assert.is_true(stream_logged(g, peer))
        assert.equal(1, hook_saw(g, peer))
        assert.equal(0, hook_saw(g, "198.51.100.1:0"))
        s:close()
      end)

      it("cannot send a PROXY header: the request is malformed, never served as that client", function()
        for _, header in ipairs({ "PROXY TCP4 203.0.113.7 127.0.0.1 5555 8080\r\n",
                                  v2_tcp4("203.0.113.7", "127.0.0.1", 5555, 8080) }) do
          local out = raw(g, header .. "GET " .. TOKEN .. " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
          -- libevent's own plain 400, or the connection closed unanswered
          assert.truthy(out == "" or out:match("^HTTP/1%.1 400 "), out)
        end
        assert.equal(0, hook_saw(g, "203.0.113.7:5555"))
        assert.falsy(g:logtext():find("203.0.113.7", 1, true))
        -- and the gateway carries on
        assert.equal(200, (g:request("GET", "/healthz")))
      end)
    end)
  end
end)

describe("--trusted-proxy values", function()
  local function run(args)
    local out = T.sh(T.bin .. " " .. args .. " --listen 127.0.0.1:" .. T.free_port() ..
                     " --script " .. T.root .. "/spec/e2e/scripts/test.lua 2>&1; echo \"status=$?\"")
    return out, tonumber(out:match("status=(%d+)"))
  end

  it("refuses a bad range at start: exit 2, a one-line error naming the option", function()
    for _, v in ipairs({ "10.0.0.1/8", "nonsense", "::1/129", "10.0.0.0/33", "10.0.0.0/", "" }) do
      local out, st = run("--trusted-proxy '" .. v .. "'")
      assert.equal(2, st, v .. ": " .. out)
      local line = out:match("^(tinysse: [^\n]+)\nstatus=2\n$")
      assert.truthy(line, v .. ": " .. out)
      assert.truthy(line:find("--trusted-proxy", 1, true), line)
    end
  end)

  it("takes addresses and ranges of both families", function()
    local out, st = run("--check --trusted-proxy 10.0.0.0/8 --trusted-proxy ::1 --trusted-proxy 192.168.1.7 " ..
                        "--trusted-proxy fd00::/8 --trusted-proxy ::ffff:10.0.0.0/104")
    assert.equal(0, st, out)
  end)
end)
