-- Cluster mode: several real gateways on loopback ports sharing one
-- redis-server that this spec starts (and stops) itself.
local support = require "spec.support"

local STREAM = "/events?token=u1:admin"
local WAIT = support.valgrind and 20 or 8 -- seconds to wait for a reconnect

local redis
local nodes = {}
local key_n = 0

-- A gateway in cluster mode. opts: buffer, buffer_age, buffer_bytes,
-- channel_history, key, url, wait.
local function node(opts)
  opts = opts or {}
  local g = support.start({
    args = { "--redis", opts.url or redis:url(), "--redis-key", opts.key,
             "--buffer", tostring(opts.buffer or 100), "--heartbeat", "1",
             "--channel-history", tostring(opts.channel_history or 16),
             "--buffer-age", tostring(opts.buffer_age or 3600),
             "--buffer-bytes", tostring(opts.buffer_bytes or 67108864) },
    wait = opts.wait,
  })
  nodes[#nodes + 1] = g
  return g
end

local function new_key()
  key_n = key_n + 1
  return "spec" .. key_n .. "-" .. os.time()
end

local function publish(g, n, targets)
  local status, _, body, json = g:publish({ targets = targets or { "all" }, data = { n = n } })
  return status, json, body
end

-- Publishes n = from..to on g; returns the ids.
local function publish_range(g, from, to)
  local ids = {}
  for n = from, to do
    local status, json, body = publish(g, n)
    assert(status == 200, "publish " .. n .. ": " .. tostring(status) .. " " .. tostring(body))
    ids[#ids + 1] = json.id
  end
  return ids
end

-- The next `count` data messages (each {n, id, event}); fails on a timeout.
local function take(s, count, timeout)
  local got = {}
  while #got < count do
    local ev, err = s:message(timeout or WAIT)
    assert(ev, "expected " .. count .. " messages, got " .. #got .. " (" .. tostring(err) .. ")")
    got[#got + 1] = { n = ev.json and ev.json.data and ev.json.data.n, id = ev.id, event = ev.event,
                      json = ev.json }
  end
  return got
end

local function ns(list)
  local out = {}
  for i, m in ipairs(list) do out[i] = m.n end
  return out
end

local function wait_until(what, fn, timeout)
  local deadline = os.time() + (timeout or WAIT)
  repeat
    if fn() then return true end
    support.sleep(0.1)
  until os.time() > deadline
  error("timed out waiting for " .. what)
end

local function healthz(g)
  local status, _, _, json = g:request("GET", "/healthz")
  return status, json
end

-- A Redis user of its own for one node, so the spec can cut that node off.
local function node_user(user, pw)
  assert.equal("OK", redis:cli("ACL", "SETUSER", user, "on", ">" .. pw, "~*", "+@all"))
  return redis:url(user .. ":" .. pw)
end

local function wait_degraded(g)
  wait_until("the node to see Redis down", function()
    local _, j = healthz(g)
    return j and j.status == "degraded"
  end)
end

-- Disables the user and drops its connections; g (its node) notices.
local function cut_off(user, g)
  assert.equal("OK", redis:cli("ACL", "SETUSER", user, "off"))
  redis:cli("CLIENT", "KILL", "USER", user)
  wait_degraded(g)
end

describe("cluster mode", function()
  setup(function() redis = support.start_redis() end)
  teardown(function() if redis then redis:stop() end end)
  after_each(function()
    for _, g in ipairs(nodes) do
      if g:alive() then assert.is_true(g:stop()) end
    end
    nodes = {}
  end)

  it("delivers a message published on any node to every node's clients, once, with one id", function()
    local key = new_key()
    local a, b, c = node({ key = key }), node({ key = key }), node({ key = key })
    local sa, sb, sc = a:stream(STREAM), b:stream(STREAM), c:stream(STREAM)
    local other = c:stream("/events?token=u2:guest")
    for _, s in ipairs({ sa, sb, sc, other }) do assert.equal(200, s.status) end
    local ids = publish_range(a, 1, 3)
    local status, _, _, json = b:publish({ { targets = { "all" }, data = { n = 4 } },
                                     { targets = { "user:u1" }, data = { n = 5 }, event = "note" } })
    assert.equal(200, status)
    ids[4], ids[5] = json.ids[1], json.ids[2]
    for _, id in ipairs(ids) do assert.truthy(id:match("^%d+%-%d+$")) end
    for _, s in ipairs({ sa, sb, sc }) do
      local got = take(s, 5)
      assert.same({ 1, 2, 3, 4, 5 }, ns(got))
      for i = 1, 5 do
        assert.equal(ids[i], got[i].id)
        assert.equal(ids[i], got[i].json.id)
      end
      assert.equal("note", got[5].event)
      assert.equal(0, #s:drain(0.3)) -- nothing twice
    end
    -- u2 is not user:u1: only the four messages for "all"
    assert.same({ 1, 2, 3, 4 }, ns(take(other, 4)))
    assert.equal(0, #other:drain(0.3))
    -- each node read each message once from Redis
    for _, g in ipairs({ a, b, c }) do assert.equal(5, g:metric("tinysse_redis_entries_read_total")) end
    assert.equal("5", redis:cli("XLEN", key))
  end)

  it("resumes on another node after the first is killed, nothing lost or doubled", function()
    local key = new_key()
    local a, b, c = node({ key = key }), node({ key = key }), node({ key = key })
    local s = a:stream(STREAM)
    local ids = publish_range(b, 1, 3)
    local got = take(s, 3)
    assert.same({ 1, 2, 3 }, ns(got))
    a:kill()
    s:close()
    publish_range(b, 4, 6)
    local r = c:stream(STREAM, { ["Last-Event-ID"] = ids[3] })
    assert.equal(200, r.status)
    assert.same({ 4, 5, 6 }, ns(take(r, 3)))
    publish_range(b, 7, 7)
    assert.same({ 7 }, ns(take(r, 1)))
    assert.equal(0, #r:drain(0.3))
  end)

  it("resumes a quiet channel on another node without a reset", function()
    local key = new_key()
    -- Redis keeps all ten (a trims to its --buffer), so a slow b (valgrind)
    -- never misses one; b's own ring holds 3: what b forgets is b's business
    local a, b = node({ key = key, buffer = 100 }), node({ key = key, buffer = 3 })
    local _, q = publish(a, 1, { "user:quiet" })
    local ids = {}
    for i = 2, 10 do
      local _, j = publish(a, i, { "role:busy" })
      ids[i] = j.id
    end
    -- b has read up to 10 once a busy stream resuming after 9 gets 10
    local probe = b:stream("/events?token=p1:busy", { ["Last-Event-ID"] = ids[9] })
    assert.same({ 10 }, ns(take(probe, 1)))
    probe:close()
    local s = b:stream("/events?token=quiet:other", { ["Last-Event-ID"] = q.id })
    assert.equal(200, s.status)
    for _, e in ipairs(s:drain(0.5)) do assert.are_not.equal("tinysse.reset", e.event) end
    publish(a, 11, { "user:quiet" })
    assert.same({ 11 }, ns(take(s, 1)))
    s:close()
  end)

  it("answers tinysse.reset when the resume id fell out of the retained window", function()
    local key = new_key()
    -- no channel history: the ring's window alone
    local a, b = node({ key = key, buffer = 3, channel_history = 0 }),
                 node({ key = key, buffer = 3, channel_history = 0 })
    local ids = publish_range(a, 1, 10)
    -- Redis keeps --buffer entries, like each node
    wait_until("the stream to be trimmed", function() return redis:cli("XLEN", key) == "3" end)
    -- b has read up to 10 once a stream resuming after 9 gets 10 (a slow b,
    -- under valgrind, may have skipped some with a gap reset: that is fine)
    local probe = b:stream(STREAM, { ["Last-Event-ID"] = ids[9] })
    assert.same({ 10 }, ns(take(probe, 1)))
    local s = b:stream(STREAM, { ["Last-Event-ID"] = ids[2] })
    local ev = s:message(WAIT)
    assert.equal("tinysse.reset", ev.event)
    assert.equal("too_old", ev.json.reason)
    assert.equal(ids[8], ev.json.oldest_id)
    assert.equal(ids[10], ev.id) -- resuming from the reset's id continues from here
    -- the newest id Redis trimmed past (7) is still a valid place to resume
    local ok = a:stream(STREAM, { ["Last-Event-ID"] = ids[7] })
    assert.same({ 8, 9, 10 }, ns(take(ok, 3)))
    -- an id from the future is not waited for
    local bogus = a:stream(STREAM, { ["Last-Event-ID"] = "99999999999999-0" })
    assert.equal("unknown", bogus:message(WAIT).json.reason)
  end)

  it("Redis keeps messages for --buffer-age at most, as each node does", function()
    local key = new_key()
    local a = node({ key = key, buffer = 100, buffer_age = 1 })
    publish_range(a, 1, 5)
    assert.equal("5", redis:cli("XLEN", key))
    support.sleep(1.3)
    publish_range(a, 6, 6) -- each append trims what is past the age
    assert.equal("1", redis:cli("XLEN", key))
  end)

  it("Redis keeps at most --buffer-bytes of history, as each node does", function()
    local key = new_key()
    -- the bytes of the stream's entries' values, counted by Redis itself
    local SUM = "local t = 0 for _, e in ipairs(redis.call('XRANGE', KEYS[1], '-', '+')) do " ..
                "for i = 2, #e[2], 2 do t = t + #e[2][i] end end return t"
    local a = node({ key = key, buffer = 100, buffer_bytes = 4096 })
    local ids = {}
    for n = 1, 10 do -- each entry holds some 1,125 bytes: 3 fit in 4096, 4 do not
      local status, _, body, json = a:publish({ targets = { "all" }, data = { n = n, pad = ("x"):rep(1100) } })
      assert(status == 200, body)
      ids[n] = json.id
    end
    assert.equal("3", redis:cli("XLEN", key))
    local held = tonumber(redis:cli("EVAL", SUM, "1", key))
    assert.is_true(held > 3000 and held <= 4096, tostring(held))
    assert.equal(tostring(held), redis:cli("HGET", key .. ":bytes", "b"))
    -- a node that starts now loads what Redis kept: 8..10
    local b = node({ key = key, buffer = 100, buffer_bytes = 4096 })
    assert.same({ 8, 9, 10 }, ns(take(b:stream(STREAM, { ["Last-Event-ID"] = ids[7] }), 3)))
    local old = b:stream(STREAM, { ["Last-Event-ID"] = ids[2] }):message(WAIT)
    assert.equal("tinysse.reset", old.event)
    -- a stream deleted behind the gateways' backs is counted anew
    redis:cli("DEL", key)
    assert.equal(200, (publish(a, 11)))
    assert.equal("1", redis:cli("XLEN", key))
    assert.equal(redis:cli("EVAL", SUM, "1", key), redis:cli("HGET", key .. ":bytes", "b"))
  end)

  it("keeps streams open while Redis is down, refuses publishes with 503, and catches up", function()
    local rdir = support.tmpdir()
    local r2 = support.start_redis({ dir = rdir })
    local key = new_key()
    local a = node({ key = key, url = r2:url() })
    local b = node({ key = key, url = r2:url() })
    local s = b:stream(STREAM)
    publish_range(a, 1, 2)
    assert.same({ 1, 2 }, ns(take(s, 2)))
    local port = r2.port
    r2:stop()
    wait_until("a to see Redis down", function()
      local _, j = healthz(a)
      return j and j.status == "degraded" and j.redis == "down"
    end)
    local status, json = publish(a, 3)
    assert.equal(503, status)
    assert.equal("redis_unavailable", json.error)
    assert.truthy(json.message:find("nothing was published", 1, true))
    local hs = healthz(b)
    assert.equal(200, hs) -- streams are still served
    -- the stream stays open (heartbeats keep coming) and gets nothing
    local ev, err = s:next(1.5)
    assert.truthy(ev, err)
    assert.is_nil(ev.text)
    -- Redis comes back with its data; both nodes reconnect by themselves
    r2 = support.start_redis({ dir = rdir, port = port })
    wait_until("both nodes to reconnect", function()
      local _, ja = healthz(a)
      local _, jb = healthz(b)
      return ja and ja.status == "ok" and jb and jb.status == "ok"
    end)
    publish_range(a, 4, 4)
    assert.same({ 4 }, ns(take(s, 1)))
    assert.equal(0, #s:drain(0.3))
    assert.is_true(a:metric("tinysse_redis_publish_refused_total") >= 1)
    assert.is_true(b:metric("tinysse_redis_disconnects_total") >= 1)
    assert.truthy(b:logtext():find("event=redis_down", 1, true))
    assert.truthy(b:logtext():find("event=redis_connected", 1, true))
    for _, g in ipairs({ a, b }) do assert.is_true(g:stop()) end
    nodes = {}
    r2:stop()
  end)

  it("a node cut off from Redis catches up: its clients miss nothing that Redis kept", function()
    local key = new_key()
    local a = node({ key = key })
    local b = node({ key = key, url = node_user("nodeb", "pw-b") })
    local s = b:stream(STREAM)
    publish_range(a, 1, 1)
    assert.same({ 1 }, ns(take(s, 1)))
    cut_off("nodeb", b)
    publish_range(a, 2, 4) -- b cannot read these now
    assert.same({}, ns(s:drain(0.5)))
    assert.equal("OK", redis:cli("ACL", "SETUSER", "nodeb", "on"))
    assert.same({ 2, 3, 4 }, ns(take(s, 3)))
    publish_range(a, 5, 5)
    assert.same({ 5 }, ns(take(s, 1)))
    assert.equal(0, #s:drain(0.3))
    assert.is_nil(b:logtext():find("pw-b", 1, true)) -- the password never reaches the log
  end)

  it("resets a cut-off node's clients when Redis trimmed what they missed", function()
    local key = new_key()
    local a = node({ key = key, buffer = 3 })
    local b = node({ key = key, buffer = 3, url = node_user("nodec", "pw-c") })
    local s = b:stream(STREAM)
    publish_range(a, 1, 1)
    assert.same({ 1 }, ns(take(s, 1)))
    cut_off("nodec", b)
    local ids = publish_range(a, 2, 10) -- Redis keeps 8..10; 2..7 are gone
    assert.equal("OK", redis:cli("ACL", "SETUSER", "nodec", "on"))
    local ev = s:message(WAIT)
    assert.equal("tinysse.reset", ev.event)
    assert.equal("gap", ev.json.reason)
    assert.equal(ids[6], ev.id) -- 7: the entry before the oldest kept, where replay starts
    assert.same({ 8, 9, 10 }, ns(take(s, 3)))
    assert.equal(1, b:metric("tinysse_redis_gaps_total"))
  end)

  it("resets the clients of a node that fell further behind than Redis keeps, never skipping silently", function()
    local key = new_key()
    local a = node({ key = key, buffer = 3 })
    local b = node({ key = key, buffer = 3 })
    local s = b:stream(STREAM)
    publish_range(a, 1, 1)
    assert.same({ 1 }, ns(take(s, 1)))
    b:signal("STOP") -- connected, but not reading
    local ids = publish_range(a, 2, 10)
    b:signal("CONT")
    -- 2 may already have been on its way to b (Redis answered b's waiting
    -- XREAD at once); what b could no longer get is announced, not skipped
    local ev = s:message(WAIT)
    if ev and ev.event == nil and ev.json.data.n == 2 then ev = s:message(WAIT) end
    assert.equal("tinysse.reset", ev.event)
    assert.equal("gap", ev.json.reason)
    assert.equal(ids[6], ev.id)
    assert.same({ 8, 9, 10 }, ns(take(s, 3)))
    assert.equal(0, #s:drain(0.3))
  end)

  it("skips stream entries not written by a gateway, and carries on", function()
    local key = new_key()
    local a = node({ key = key })
    local s = a:stream(STREAM)
    publish_range(a, 1, 1)
    redis:cli("XADD", key, "*", "d", "not json", "t", "all")
    redis:cli("XADD", key, "*", "hello", "world")
    publish_range(a, 2, 2)
    assert.same({ 1, 2 }, ns(take(s, 2)))
    assert.equal(0, #s:drain(0.3))
    assert.equal(2, a:metric("tinysse_redis_bad_entries_total"))
    assert.equal(0, a:metric("tinysse_redis_gaps_total"))
    assert.truthy(a:logtext():find("event=redis_bad_entry", 1, true))
  end)

  it("a node started late serves resumes from what Redis kept, and new clients from now on", function()
    local key = new_key()
    local a = node({ key = key })
    local ids = publish_range(a, 1, 5)
    local late = node({ key = key })
    local r = late:stream(STREAM, { ["Last-Event-ID"] = ids[2] })
    assert.same({ 3, 4, 5 }, ns(take(r, 3)))
    local fresh = late:stream(STREAM)
    assert.equal(0, #fresh:drain(0.3)) -- the backlog is for replay only
    publish_range(a, 6, 6)
    assert.same({ 6 }, ns(take(r, 1)))
    assert.same({ 6 }, ns(take(fresh, 1)))
  end)

  it("sheds streams (never a 503) before it has read the stream once; Lua hooks publish through Redis", function()
    local port = support.free_port()
    local g = support.start({
      args = { "--redis", "redis://127.0.0.1:" .. port, "--redis-key", new_key() },
      script = support.root .. "/spec/e2e/scripts/presence.lua",
      wait = false,
    })
    nodes[#nodes + 1] = g
    wait_until("the gateway to answer", function() return healthz(g) ~= nil end)
    local status, json = healthz(g)
    assert.equal(503, status)
    assert.equal("starting", json.status)
    -- a node started before Redis is up sheds streams: a browser's
    -- EventSource retries after the jittered retry: instead of giving up
    local s = g:stream("/events?token=w:watcher&watch=1")
    local busy, retry = s:busy(WAIT)
    assert.is_table(busy, retry)
    assert.equal("not_ready", busy.reason)
    assert.is_true(retry >= 1000 and retry <= 10000, "retry " .. tostring(retry))
    assert.equal(1, g:metric('tinysse_shed_total{reason="not_ready"}'))
    local r = support.start_redis({ port = port })
    assert.truthy(g:wait_ready(WAIT))
    -- ready (it has read the stream); its publishing connection may come a
    -- little later, on its own backoff
    wait_until("every Redis connection to be up", function()
      local _, j = healthz(g)
      return j and j.status == "ok"
    end)
    local watcher = g:stream("/events?token=w:watcher&watch=1")
    assert.equal(200, watcher.status)
    local joined = g:stream("/events?token=u7:member")
    local ev = watcher:message(WAIT) -- published by on_connect via tinysse.publish
    assert.equal("presence.joined", ev.event)
    assert.equal("u7", ev.json.data.joined)
    assert.truthy(ev.id:match("^%d+%-%d+$"))
    joined:close()
    assert.is_true(g:stop())
    nodes = {}
    r:stop()
  end)

  it("loses and repeats nothing while clients drop and resume on random nodes", function()
    local key = new_key()
    local a = node({ key = key, buffer = 5000 })
    local b = node({ key = key, buffer = 5000 })
    local c = node({ key = key, buffer = 5000 })
    local churn = os.getenv("TINYSSE_CHURN") or (support.root .. "/build/spec/churn")
    local clients, messages = 300, 1000
    if support.valgrind then clients, messages = 60, 500 end
    local out = support.sh(string.format("timeout 150 %s %d,%d,%d %s %d %d 100 2>&1; echo status=$?",
                                         churn, a.port, b.port, c.port, a.key, clients, messages))
    print(out)
    assert.truthy(out:find("status=0", 1, true), out)
    local reconnects = tonumber(out:match("reconnects=(%d+)"))
    assert.is_true(reconnects > clients / 2, "too little churn: " .. tostring(reconnects))
    assert.truthy(out:find("duplicates=0 gaps=0 incomplete=0", 1, true), out)
  end)

  it("refuses a bad --redis URL at start with a clear message", function()
    local out = support.sh(support.bin .. " --redis http://x --check --script " ..
                           support.root .. "/spec/e2e/scripts/test.lua 2>&1; echo rc=$?")
    assert.truthy(out:find("--redis: expected redis://", 1, true), out)
    assert.truthy(out:find("rc=1", 1, true), out)
  end)
end)
