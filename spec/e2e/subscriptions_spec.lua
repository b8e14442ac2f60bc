-- Server-side subscriptions on one node: POST /subscriptions by user and by
-- connection id, tinysse.subscribe / tinysse.unsubscribe from hooks, order
-- with publishes, reconnects that keep added channels (and replay them),
-- the limits, the optional tinysse.subscribed event, /channels and the
-- hooks' client table. The script is spec/e2e/scripts/subscriptions.lua.
local T = require "support"

local S = require "subs_support"
local SCRIPT, KEY, subscribe, publish, open = S.SCRIPT, S.KEY, S.subscribe, S.publish, S.open
local WAIT = T.valgrind and 10 or 3
local function datas(s, quiet) return S.datas(s, quiet) end

local function subscribers(g, ch)
  local _, _, _, j = g:request("GET", "/channels?channel=" .. ch, KEY)
  return j and j.subscribers
end

describe("POST /subscriptions", function()
  local g
  setup(function()
    g = T.start({ script = SCRIPT, workers = 2, env = { TINYSSE_ROOT = T.root } })
  end)
  teardown(function() g:stop() end)

  it("adds channels to every stream of a user at once, on every worker", function()
    local a, b, other = open(g, "ua:r"), open(g, "ua:r"), open(g, "ub:r")
    finally(function() a:close(); b:close(); other:close() end)
    datas(a); datas(b)
    local st, j = subscribe(g, { user = "ua", subscribe = { "room:a1", "room:a2" } })
    assert.are.equal(200, st)
    assert.are.equal(2, j.streams)
    -- published after the answer: it reaches both streams, and only them
    publish(g, { "room:a1" }, "one")
    publish(g, { "room:a2" }, "two")
    assert.are.same({ "one", "two" }, datas(a))
    assert.are.same({ "one", "two" }, datas(b))
    assert.are.same({}, datas(other))
    assert.are.equal(2, subscribers(g, "room:a1"))
    -- and removes them
    st, j = subscribe(g, { user = "ua", unsubscribe = { "room:a1" } })
    assert.are.equal(200, st)
    publish(g, { "room:a1" }, "gone")
    publish(g, { "room:a2" }, "still")
    assert.are.same({ "still" }, datas(a))
    assert.are.same({ "still" }, datas(b))
    assert.are.equal(0, subscribers(g, "room:a1"))
  end)

  it("changes one stream by its connection id; the hooks see the new channels", function()
    local audit = g:stream("/events?token=audit:r&extra=audit")
    finally(function() audit:close() end)
    local a, b = open(g, "uc:r"), open(g, "uc:r")
    datas(a); datas(b)
    local st, j = subscribe(g, { client = a.cid, subscribe = { "room:c" }, unsubscribe = { "all" } })
    assert.are.equal(200, st)
    assert.are.equal(1, j.streams)
    publish(g, { "room:c" }, "c only")
    publish(g, { "all" }, "to all")
    assert.are.same({ "c only" }, datas(a))
    assert.are.same({ "to all" }, datas(b))
    -- on_disconnect's client table has the changed channels
    a:close()
    local bye
    T.wait_until("the audit message", function()
      for _, d in ipairs(datas(audit, 0.2)) do
        if type(d) == "table" and d.bye == a.cid then bye = d end
      end
      return bye ~= nil
    end, WAIT)
    table.sort(bye.channels)
    assert.are.same({ "role:r", "room:c", "user:uc" }, bye.channels)
    b:close()
    -- an id that is not open (any more), or malformed: nothing to change
    for _, id in ipairs({ a.cid, "0-1", "9-1", "x", "0-", "1-99999999999999999999" }) do
      st, j = subscribe(g, { client = id, subscribe = { "room:c" } })
      assert.are.equal(200, st, id)
      assert.are.equal(0, j.streams, id)
    end
  end)

  it("answers an unknown user with 0 streams, and keeps its channels for later", function()
    local st, j = subscribe(g, { user = "later", subscribe = { "room:later" } })
    assert.are.equal(200, st)
    assert.are.equal(0, j.streams)
    local s = open(g, "later:r")
    finally(function() s:close() end)
    table.sort(s.channels)
    assert.are.same({ "all", "role:r", "room:later", "user:later" }, s.channels)
    datas(s)
    publish(g, { "room:later" }, "kept")
    assert.are.same({ "kept" }, datas(s))
  end)

  it("a reconnecting stream gets its added channels back, and what was sent to them meanwhile", function()
    local s = open(g, "ur:r")
    datas(s)
    assert.are.equal(200, (subscribe(g, { user = "ur", subscribe = { "room:r" } })))
    local first = publish(g, { "room:r" }, "before")
    local got = s:message(WAIT)
    assert.are.equal(first, got.id)
    s:close()
    T.wait_until("the stream to close", function() return subscribers(g, "room:r") == 0 end, WAIT)
    publish(g, { "room:r" }, "while away")
    local again = g:stream("/events?token=ur:r", { ["Last-Event-ID"] = first })
    finally(function() again:close() end)
    local seen = {}
    for _, d in ipairs(datas(again)) do seen[#seen + 1] = type(d) == "table" and "hello" or d end
    assert.are.same({ "while away", "hello" }, seen)
  end)

  local ROUNDS = T.valgrind and 50 or 200
  it("orders a change with the publishes around it (" .. ROUNDS .. " rounds)", function()
    local s = open(g, "uo:r")
    finally(function() s:close() end)
    datas(s)
    local want = {}
    for i = 1, ROUNDS do
      local ch = "room:o" .. (i % 7)
      publish(g, { ch }, "before " .. i)             -- not joined yet: never seen
      assert.are.equal(200, (subscribe(g, { user = "uo", subscribe = { ch } })))
      publish(g, { ch }, "in " .. i)                 -- after the answer: always seen
      want[#want + 1] = "in " .. i
      assert.are.equal(200, (subscribe(g, { user = "uo", unsubscribe = { ch } })))
      publish(g, { ch }, "after " .. i)              -- left: never seen
    end
    local got = {}
    T.wait_until(ROUNDS .. " messages", function()
      for _, d in ipairs(datas(s, 0.2)) do got[#got + 1] = d end
      return #got >= ROUNDS
    end, 10 * WAIT)
    assert.are.same(want, got)
  end)

  it("joins and leaves while another publisher is busy: the stream sees one unbroken run of its messages", function()
    local H = require "h2_support"
    local s = open(g, "uq:r")
    finally(function() s:close() end)
    datas(s)
    -- a publisher in the background: 1..N to room:q as fast as curl goes
    local N = T.valgrind and 150 or 400
    local script = string.format(
      "for i in $(seq 1 %d); do curl -s -o /dev/null -H 'Authorization: Bearer %s' " ..
      "-H 'Content-Type: application/json' -d \"{\\\"targets\\\":[\\\"room:q\\\"],\\\"data\\\":$i}\" " ..
      "http://127.0.0.1:%d/publish; done", N, T.publish_key, g.port)
    local bg = H.background(g.dir, { "sh", "-c", script }, 120)
    finally(function() bg:stop() end)
    -- join once the publisher is under way, leave while it still is
    local function published() return tonumber(g:metric("tinysse_messages_published_total")) or 0 end
    local base = published()
    T.wait_until("the publisher to start", function() return published() >= base + 20 end, 10 * WAIT)
    assert.are.equal(200, (subscribe(g, { user = "uq", subscribe = { "room:q" } })))
    T.wait_until("more messages", function() return published() >= base + N // 2 end, 20 * WAIT)
    assert.are.equal(200, (subscribe(g, { user = "uq", unsubscribe = { "room:q" } })))
    assert.are.equal(0, bg:wait(60 * WAIT))
    local got = {}
    for _, ev in ipairs(s:drain(T.valgrind and 1.5 or 0.5)) do
      if ev.json and type(ev.json.data) == "number" then got[#got + 1] = ev.json.data end
    end
    -- the run started after the first message and ended before the last
    assert.is_true(#got > 0, "the stream got none of the publisher's messages")
    assert.is_true(got[1] > 1 and got[#got] < N, "run " .. got[1] .. ".." .. got[#got])
    for i = 2, #got do
      assert.are.equal(got[i - 1] + 1, got[i], "a hole or a repeat after " .. got[i - 1])
    end
  end)

  it("lets hooks change streams with tinysse.subscribe / tinysse.unsubscribe", function()
    local j = open(g, "autojoin:r")
    local l = g:stream("/events?token=autoleave:r")
    finally(function() j:close(); l:close() end)
    assert.are.same({ { joined = 1 } }, j.before) -- tinysse.subscribe's answer: one stream
    datas(j); datas(l)
    publish(g, { "auto:autojoin" }, "auto")
    publish(g, { "all" }, "everyone")
    assert.are.same({ "auto", "everyone" }, datas(j))
    local left = {}
    for _, d in ipairs(datas(l)) do if type(d) ~= "table" then left[#left + 1] = d end end
    assert.are.same({}, left) -- it left "all" from on_connect
    -- a bad change raises in the hook, with the same message as the API's
    local e = g:stream("/events?token=luaerr:r")
    finally(function() e:close() end)
    local msgs = datas(e)
    local report
    for _, d in ipairs(msgs) do if type(d) == "table" and d.ok ~= nil then report = d end end
    assert.is_false(report.ok)
    assert.truthy(report.err:find("a channel name is 1 to 200 bytes", 1, true))
  end)

  it("refuses bad changes with 400 naming the field, and strangers with 401/403", function()
    local cases = {
      { {}, "user" },
      { { user = "u", client = "0-1", subscribe = { "a" } }, "user" },
      { { user = "u" }, "subscribe" },
      { { user = "", subscribe = { "a" } }, "user" },
      { { user = ("x"):rep(257), subscribe = { "a" } }, "user" },
      { { user = 5, subscribe = { "a" } }, "user" },
      { { user = "u", subscribe = "a" }, "subscribe" },
      { { user = "u", subscribe = { 5 } }, "subscribe" },
      { { user = "u", subscribe = { "" } }, "subscribe" },
      { { user = "u", subscribe = { "bad\1name" } }, "subscribe" },
      { { user = "u", unsubscribe = { ("c"):rep(201) } }, "unsubscribe" },
      { { user = "u", subscribe = { "a" }, unsubscribe = { "a" } }, "unsubscribe" },
      { { user = "u", subscribe = { "a" }, extra = 1 }, "extra" },
    }
    local many = {}
    for i = 1, 257 do many[i] = "m" .. i end
    cases[#cases + 1] = { { user = "u", subscribe = many }, "subscribe" }
    for i, c in ipairs(cases) do
      local st, j = subscribe(g, c[1])
      assert.are.equal(400, st, "case " .. i)
      assert.are.equal("bad_request", j.error, "case " .. i)
      assert.are.equal(c[2], j.field, "case " .. i .. ": " .. tostring(j.message))
      assert.is_string(j.message)
    end
    for _, body in ipairs({ "", "[1]", "{", "null" }) do
      local st, j = subscribe(g, body)
      assert.are.equal(400, st, body)
      assert.are.equal("bad_request", j.error, body)
    end
    local st = subscribe(g, { user = "u", subscribe = { "a" } }, { ["Content-Type"] = "application/json" })
    assert.are.equal(401, st)
    st = subscribe(g, { user = "u", subscribe = { "a" } }, { Authorization = "Bearer not-the-key-at-all" })
    assert.are.equal(403, st)
    st = g:request("GET", "/subscriptions", KEY)
    assert.are.equal(405, st)
  end)

  it("keeps at most 256 channels per user, and a stream at most 256 in all", function()
    local s = open(g, "ul:r")
    finally(function() s:close() end)
    datas(s)
    local names = {}
    for i = 1, 256 do names[i] = "l" .. i end
    local st, j = subscribe(g, { user = "ul", subscribe = names })
    assert.are.equal(200, st)
    -- the user keeps 256 added channels; one more is refused
    st, j = subscribe(g, { user = "ul", subscribe = { "l257" } })
    assert.are.equal(400, st)
    assert.are.equal("subscribe", j.field)
    assert.truthy(j.message:find("256", 1, true))
    -- the stream had 3 of its own: 253 of the 256 fit, the rest is counted
    T.wait_until("the dropped channels counted", function()
      return (g:metric("tinysse_subscription_channels_dropped_total") or 0) >= 3
    end, WAIT)
    publish(g, { "l1" }, "first")
    publish(g, { "l253" }, "last that fits")
    publish(g, { "l254" }, "dropped")
    assert.are.same({ "first", "last that fits" }, datas(s))
    assert.truthy(g:logtext():find("event=subscription_truncated", 1, true))
  end)
end)

describe("--subscribed-event, --subscription-users and --subscription-ttl", function()
  local g
  setup(function()
    g = T.start({ script = SCRIPT, env = { TINYSSE_ROOT = T.root },
                  args = { "--subscribed-event", "--subscription-users", "2", "--subscription-ttl", "2" } })
  end)
  teardown(function() g:stop() end)

  it("tells the stream its channels changed, without naming them", function()
    local s = open(g, "ue:r")
    finally(function() s:close() end)
    datas(s)
    assert.are.equal(200, (subscribe(g, { user = "ue", subscribe = { "room:e1", "room:e2" },
                                          data = { room = "e1", why = "invited" } })))
    local ev = s:message(WAIT)
    assert.are.equal("tinysse.subscribed", ev.event)
    assert.is_nil(ev.id)
    assert.are.same({ type = "subscribed", subscribed = 2, unsubscribed = 0,
                      data = { room = "e1", why = "invited" } }, ev.json)
    assert.is_nil(ev.raw:find("room:e2", 1, true))
  end)

  it("keeps subscriptions for --subscription-users users, and forgets them after --subscription-ttl", function()
    T.sleep(2.2) -- the test before kept a user for 2 s
    assert.are.equal(200, (subscribe(g, { user = "t1", subscribe = { "room:t" } })))
    assert.are.equal(200, (subscribe(g, { user = "t2", subscribe = { "room:t" } })))
    local st, j = subscribe(g, { user = "t3", subscribe = { "room:t" } })
    assert.are.equal(503, st)
    assert.are.equal("subscriptions_full", j.error)
    -- a change for a kept user still works
    assert.are.equal(200, (subscribe(g, { user = "t1", subscribe = { "room:t2" } })))
    T.sleep(2.3)
    local s = open(g, "t1:r")
    finally(function() s:close() end)
    table.sort(s.channels)
    assert.are.same({ "all", "role:r", "user:t1" }, s.channels)
    assert.are.equal(200, (subscribe(g, { user = "t3", subscribe = { "room:t" } })))
    assert.are.equal(1, g:metric("tinysse_subscription_users"))
  end)
end)
