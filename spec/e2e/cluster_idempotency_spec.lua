-- Idempotency-Key in cluster mode: the key lives in Redis, checked and
-- recorded in the step that appends the messages, so a repeat on any node
-- answers the first publish's ids and publishes nothing. Starts (and stops)
-- its own redis-server, like cluster_spec.lua.
local T = require "support"
local socket = require "socket"
local cjson = T.json

local WAIT = T.valgrind and 20 or 8
local STREAM = "/events?token=u1:admin"

local redis
local nodes = {}
local n = 0

local function unique(what)
  n = n + 1
  return what .. n .. "-" .. os.time()
end

local function wait_until(what, fn, timeout) return T.wait_until(what, fn, timeout or WAIT) end

-- The script: test.lua plus publishing from issue_token
-- (spec/e2e/scripts/publishing.lua).
local SCRIPT = T.root .. "/spec/e2e/scripts/publishing.lua"

-- A cluster node on stream `key`, every Redis connection up. opts: args, script.
local function node(key, opts)
  opts = opts or {}
  local args = { "--redis", redis:url(), "--redis-key", key, "--buffer", "100",
                 "--hook-timeout", "5" }
  for _, a in ipairs(opts.args or {}) do args[#args + 1] = a end
  local g = T.start({ args = args, script = opts.script, env = { TINYSSE_ROOT = T.root } })
  nodes[#nodes + 1] = g
  wait_until("the node's Redis connections", function()
    local _, _, _, j = g:request("GET", "/healthz")
    return j and j.status == "ok"
  end)
  return g
end

local function publish(g, body, key)
  local headers = { ["Content-Type"] = "application/json", Authorization = "Bearer " .. g.key }
  if key then headers["Idempotency-Key"] = key end
  if type(body) ~= "string" then body = cjson.encode(body) end
  return g:request("POST", "/publish", headers, body)
end

local function subscribe(g)
  local s = g:stream(STREAM)
  assert.equal(200, s.status)
  return s
end

-- The ids that arrive on s until it is quiet.
local function received(s)
  local ids = {}
  for _, ev in ipairs(s:drain(T.valgrind and 2 or 0.7)) do ids[#ids + 1] = ev.id end
  return ids
end

-- The first `count` ids to arrive on s, then nothing more.
local function exactly(s, count)
  local ids = {}
  while #ids < count do
    local ev, err = s:message(WAIT)
    assert.truthy(ev, "expected " .. count .. " messages, got " .. #ids .. " (" .. tostring(err) .. ")")
    ids[#ids + 1] = ev.id
  end
  local more = received(s)
  assert.equal(0, #more, "more messages than expected: " .. table.concat(more, " "))
  return ids
end

local function idem_keys(key)
  local out = {}
  for k in redis:cli("--scan", "--pattern", key .. ":idem:*"):gmatch("[^\n]+") do out[#out + 1] = k end
  return out
end

describe("Idempotency-Key in cluster mode", function()
  setup(function() redis = T.start_redis() end)
  teardown(function() if redis then redis:stop() end end)
  after_each(function()
    local all = nodes
    nodes = {}
    for _, g in ipairs(all) do
      if g:alive() then assert.is_true(g:stop()) end
    end
  end)

  it("a repeat on another node answers the same id and publishes nothing; another body is 409", function()
    local rkey, key = unique("idem"), unique("key")
    local a, b = node(rkey), node(rkey)
    local sa, sb = subscribe(a), subscribe(b)
    local msg = { targets = { "all" }, data = { n = 1 } }
    local st, h, body, j = publish(a, msg, key)
    assert.equal(200, st, body)
    assert.truthy(j.id:match("^%d+%-%d+$"))
    assert.is_nil(h["idempotent-replayed"])
    local st2, h2, body2, j2 = publish(b, msg, key)
    assert.equal(200, st2, body2)
    assert.same({ id = j.id }, j2)
    assert.equal("true", h2["idempotent-replayed"])
    -- the same publish, spaced differently, on a again
    local st3, h3, _, j3 = publish(a, ' {\n "data" : {"n" : 1} , "targets" : [ "all" ] } ', key)
    assert.equal(200, st3)
    assert.equal(j.id, j3.id)
    assert.equal("true", h3["idempotent-replayed"])
    -- another publish under the key: refused on either node
    for _, g in ipairs({ b, a }) do
      local st4, h4, body4, j4 = publish(g, { targets = { "all" }, data = { n = 2 } }, key)
      assert.equal(409, st4, body4)
      assert.equal("idempotency_conflict", j4.error)
      assert.is_nil(h4["idempotent-replayed"])
    end
    assert.same({ j.id }, exactly(sb, 1))
    assert.same({ j.id }, exactly(sa, 1))
    assert.equal("1", redis:cli("XLEN", rkey))
    assert.equal(1, b:metric("tinysse_redis_entries_read_total"))
  end)

  it("keeps the key in Redis, expiring after the window", function()
    local rkey, key = unique("idem"), unique("key")
    local a = node(rkey)
    local st, _, body, j = publish(a, { targets = { "all" }, data = "kept" }, key)
    assert.equal(200, st, body)
    local found = idem_keys(rkey)
    assert.equal(1, #found, table.concat(found, " "))
    assert.equal(":" .. key, found[1]:sub(-#key - 1))
    local ttl = tonumber(redis:cli("TTL", found[1]))
    assert.is_true(ttl > 0 and ttl <= 300, "TTL " .. tostring(ttl))
    -- what it holds: the digest of the publish and its id
    assert.truthy(redis:cli("GET", found[1]):match("^%x+ " .. j.id:gsub("%-", "%%-") .. "$"))
  end)

  it("replays an array's ids across nodes", function()
    local rkey, key = unique("idem"), unique("key")
    local a, b = node(rkey), node(rkey)
    local sb = subscribe(b)
    local batch = { { targets = { "all" }, data = { 1 } }, { targets = { "user:u1" }, data = { n = 2 }, event = "e" } }
    local st, _, body, j = publish(a, batch, key)
    assert.equal(200, st, body)
    assert.equal(2, #j.ids)
    local st2, h2, body2, j2 = publish(b, batch, key)
    assert.equal(200, st2, body2)
    assert.same({ ids = j.ids }, j2)
    assert.equal("true", h2["idempotent-replayed"])
    -- one of its messages alone is another publish
    local st3, _, _, j3 = publish(b, batch[1], key)
    assert.equal(409, st3)
    assert.equal("idempotency_conflict", j3.error)
    assert.same(j.ids, exactly(sb, 2))
    assert.equal("2", redis:cli("XLEN", rkey))
  end)

  it("concurrent repeats on both nodes: one publishes, every answer has its id", function()
    local rkey, key = unique("idem"), unique("key")
    local a, b = node(rkey), node(rkey)
    local sa, sb = subscribe(a), subscribe(b)
    local body = cjson.encode({ targets = { "all" }, data = { burst = key } })
    local conns = {}
    for i = 1, 20 do
      local g = i % 2 == 0 and a or b
      local c = assert(g:connect(WAIT))
      conns[i] = { c = c, req = g:build_request("POST", "/publish", {
        ["Content-Type"] = "application/json", Authorization = "Bearer " .. g.key,
        ["Idempotency-Key"] = key, Connection = "close" }, body) }
    end
    for _, x in ipairs(conns) do assert(x.c:send(x.req)) end
    local ids, replayed = {}, 0
    for i, x in ipairs(conns) do
      local st, h, b_ = T.read_response(x.c)
      x.c:close()
      assert.equal(200, st, "answer " .. i .. ": " .. tostring(b_))
      ids[cjson.decode(b_).id] = true
      if h["idempotent-replayed"] == "true" then replayed = replayed + 1 end
    end
    local distinct = {}
    for id in pairs(ids) do distinct[#distinct + 1] = id end
    assert.equal(1, #distinct, table.concat(distinct, " "))
    assert.equal(19, replayed)
    assert.same(distinct, exactly(sa, 1))
    assert.same(distinct, exactly(sb, 1))
    assert.equal("1", redis:cli("XLEN", rkey))
  end)

  it("forgets a key after --idempotency-window", function()
    local rkey, key = unique("idem"), unique("key")
    local a = node(rkey, { args = { "--idempotency-window", "1" } })
    local b = node(rkey, { args = { "--idempotency-window", "1" } })
    local sb = subscribe(b)
    local msg = { targets = { "all" }, data = "again" }
    local st, _, body, j = publish(a, msg, key)
    local t0 = socket.gettime()
    assert.equal(200, st, body)
    local found = idem_keys(rkey)
    assert.equal(1, #found)
    local pttl = tonumber(redis:cli("PTTL", found[1]))
    if pttl ~= -2 then -- -2: already expired (a slow run)
      assert.is_true(pttl > 0 and pttl <= 1000, "PTTL " .. tostring(pttl))
    end
    T.sleep(math.max(0, 1.5 - (socket.gettime() - t0)))
    assert.same({}, idem_keys(rkey))
    local st2, h2, body2, j2 = publish(b, msg, key)
    assert.equal(200, st2, body2)
    assert.is_nil(h2["idempotent-replayed"])
    assert.are_not.equal(j.id, j2.id)
    -- remembered afresh
    local st3, h3, _, j3 = publish(a, msg, key)
    assert.equal(200, st3)
    assert.equal(j2.id, j3.id)
    assert.equal("true", h3["idempotent-replayed"])
    assert.same({ j.id, j2.id }, exactly(sb, 2))
    assert.equal("2", redis:cli("XLEN", rkey))
  end)

  it("tinysse.publish with a key: nil, and a repeat on any node publishes nothing", function()
    local rkey, key = unique("idem"), unique("key")
    local a, b = node(rkey, { script = SCRIPT }), node(rkey, { script = SCRIPT })
    local sa = subscribe(a)
    local r = a:script_publish("all", key, "one", 2)
    for i = 1, 2 do
      assert.is_true(r[i].ok, tostring(r[i].res))
      assert.equal(cjson.null, r[i].res) -- Redis assigns the id later
    end
    local again = b:script_publish("all", key, "one")
    assert.same({ ok = true, res = cjson.null }, again[1])
    local ev = sa:message(WAIT)
    assert.truthy(ev, "the script's message did not arrive")
    assert.equal("scripted", ev.event)
    assert.same({ v = "one" }, ev.json.data)
    assert.same({}, received(sa))
    assert.equal("1", redis:cli("XLEN", rkey))
    assert.equal(1, #idem_keys(rkey))
    -- another payload under the key: nothing published, the failure logged
    local other = b:script_publish("all", key, "two")
    assert.is_true(other[1].ok, tostring(other[1].res))
    wait_until("the conflict in b's log", function()
      return b:logtext():find("event=script_publish_failed reason=idempotency_conflict", 1, true)
    end)
    assert.same({}, received(sa))
    assert.equal("1", redis:cli("XLEN", rkey))
    -- an HTTP publisher's same key is another key
    local st, h = publish(a, { targets = { "all" }, handler_id = 3, event = "scripted", data = { v = "one" } }, key)
    assert.equal(200, st)
    assert.is_nil(h["idempotent-replayed"])
    assert.equal(1, #exactly(sa, 1))
  end)
end)
