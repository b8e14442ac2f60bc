-- Server-side subscriptions across three cluster nodes sharing one
-- redis-server this spec starts: a change made on one node reaches the
-- streams on every node, in order with publishes; connection ids name
-- their node; the kept subscriptions live in Redis, so a node started later
-- (or a stream reconnecting to another node) gets them back.
local T = require "support"

local S = require "subs_support"
local SCRIPT, subscribe, publish = S.SCRIPT, S.subscribe, S.publish
local WAIT = T.valgrind and 15 or 5
local function open(g, token, headers) return S.open(g, token, headers, WAIT) end
local function datas(s, quiet) return S.datas(s, quiet, true) end

describe("server-side subscriptions in cluster mode (3 nodes)", function()
  local r, key
  local nodes = {}
  local function node()
    local g = T.start({ script = SCRIPT, env = { TINYSSE_ROOT = T.root },
                        args = { "--redis", r:url(), "--redis-key", key } })
    nodes[#nodes + 1] = g
    return g
  end
  setup(function()
    r = T.start_redis()
    key = "subs" .. math.random(1, 1e9)
    for _ = 1, 3 do node() end
  end)
  teardown(function()
    for _, g in ipairs(nodes) do g:stop() end
    if r then r:stop() end
  end)

  it("a change on one node reaches the user's streams on every node, before what is published after it", function()
    local a, b, c = nodes[1], nodes[2], nodes[3]
    local sb, sc = open(b, "cu:r"), open(c, "cu:r")
    finally(function() sb:close(); sc:close() end)
    datas(sb); datas(sc)
    local st, j = subscribe(a, { user = "cu", subscribe = { "room:x" } })
    assert.are.equal(200, st)
    assert.is_string(j.id) -- the stream entry
    assert.are.equal(0, j.streams) -- none of cu's streams is on node a
    publish(c, { "room:x" }, "x1")   -- another node, right after the answer
    publish(a, { "room:x" }, "x2")
    assert.are.same({ "x1", "x2" }, datas(sb))
    assert.are.same({ "x1", "x2" }, datas(sc))
    -- Redis keeps the user's set for later
    assert.truthy(r:cli("HGET", key .. ":subs", "cu"):find("room:x", 1, true))
  end)

  it("orders changes and publishes made on different nodes (60 rounds)", function()
    local a, b, c = nodes[1], nodes[2], nodes[3]
    local s = open(c, "co:r")
    finally(function() s:close() end)
    datas(s)
    local want = {}
    for i = 1, 60 do
      local ch = "room:o" .. (i % 5)
      assert.are.equal(200, (subscribe(a, { user = "co", subscribe = { ch } })))
      publish(b, { ch }, "in " .. i)
      want[#want + 1] = "in " .. i
      assert.are.equal(200, (subscribe(b, { user = "co", unsubscribe = { ch } })))
      publish(a, { ch }, "out " .. i)
    end
    local got = {}
    T.wait_until("60 messages", function()
      for _, d in ipairs(datas(s, 0.3)) do got[#got + 1] = d end
      return #got >= 60
    end, 6 * WAIT)
    T.sleep(0.5)
    for _, d in ipairs(datas(s, 0.3)) do got[#got + 1] = d end
    assert.are.same(want, got)
  end)

  it("finds one stream by its connection id, whichever node is asked", function()
    local a, b = nodes[1], nodes[2]
    local s1, s2 = open(b, "ci:r"), open(b, "ci:r")
    finally(function() s1:close(); s2:close() end)
    assert.truthy(s1.cid:match("^%x%x%x%x%x%x%.%d+%-%d+$"), s1.cid)
    datas(s1); datas(s2)
    local st = subscribe(a, { client = s1.cid, subscribe = { "room:ci" } })
    assert.are.equal(200, st)
    publish(a, { "room:ci" }, "just one")
    assert.are.same({ "just one" }, datas(s1))
    assert.are.same({}, datas(s2))
  end)

  it("a node started later, and a stream that moves to it, get the kept subscriptions and their replay", function()
    local a = nodes[1]
    local s = open(a, "cl:r")
    datas(s)
    assert.are.equal(200, (subscribe(a, { user = "cl", subscribe = { "room:late" } })))
    local first = publish(a, { "room:late" }, "first")
    assert.are.same({ "first" }, datas(s))
    s:close()
    publish(a, { "room:late" }, "while moving")
    local d = node()
    T.wait_until("the new node to be ready", function() return (d:request("GET", "/healthz")) == 200 end, WAIT)
    local again = open(d, "cl:r", { ["Last-Event-ID"] = first })
    finally(function() again:close() end)
    table.sort(again.channels)
    assert.are.same({ "all", "role:r", "room:late", "user:cl" }, again.channels)
    -- its replay covered the added channel (before the hello, which is live)
    assert.are.same({ "while moving" }, again.before)
    publish(nodes[2], { "room:late" }, "live")
    assert.are.same({ "live" }, datas(again))
  end)
end)
