-- Idempotency-Key on POST /publish (single node): a repeat answers the first
-- publish's ids and publishes nothing; the same key for something else is a
-- conflict; keys are per publisher, expire, and are capped in number; and
-- tinysse.publish takes a key too.
local T = require "support"
local socket = require "socket"
local cjson = T.json

local WAIT = T.valgrind and 20 or 5
local OTHER = "other-publisher-token"

-- The script: test.lua plus publishing from issue_token
-- (spec/e2e/scripts/publishing.lua), with OTHER as a second publisher.
local SCRIPT = T.root .. "/spec/e2e/scripts/publishing.lua"
local SCRIPT_ENV = { TINYSSE_ROOT = T.root, TINYSSE_TEST_OTHER_PUBLISHER = OTHER }

local n = 0
local function unique(what)
  n = n + 1
  return what .. n .. "-" .. os.time()
end

-- POST /publish with an Idempotency-Key; auth: a bearer key (default the
-- publish key). Returns status, headers, body, json.
local function publish(g, body, key, auth)
  local headers = { ["Content-Type"] = "application/json",
                    Authorization = "Bearer " .. (auth or g.key) }
  if key then headers["Idempotency-Key"] = key end
  if type(body) ~= "string" then body = cjson.encode(body) end
  return g:request("POST", "/publish", headers, body)
end

local function published(g) return g:metric("tinysse_messages_published_total") end

-- A stream on its own channel ch (test.lua adds ?extra= to its channels).
local function subscribe(g, ch)
  local s = g:stream("/events?token=u1:admin&extra=" .. ch)
  assert.equal(200, s.status)
  return s
end

-- The ids of the messages that arrive on s (until it is quiet).
local function received(s, quiet)
  local ids = {}
  for _, ev in ipairs(s:drain(quiet or (T.valgrind and 1.5 or 0.5))) do ids[#ids + 1] = ev.id end
  return ids
end

local function wait_for(what, fn, timeout) return T.wait_until(what, fn, timeout or WAIT) end

describe("Idempotency-Key", function()
  local g
  setup(function()
    g = T.start({ script = SCRIPT, env = SCRIPT_ENV, args = { "--hook-timeout", "5" } })
  end)
  teardown(function() if g then assert.is_true(g:stop()) end end)

  it("a repeat answers the same id, marked replayed, and publishes nothing", function()
    local ch, key = unique("ch"), unique("key")
    local s = subscribe(g, ch)
    local before = published(g)
    local msg = '{"targets":["' .. ch .. '"],"data":{"n":1,"text":"hello"},"event":"note"}'
    local st, h, body, j = publish(g, msg, key)
    assert.equal(200, st, body)
    assert.truthy(j.id:match("^%d+%-%d+$"))
    assert.is_nil(h["idempotent-replayed"])
    local st2, h2, body2, j2 = publish(g, msg, key)
    assert.equal(200, st2, body2)
    assert.same({ id = j.id }, j2)
    assert.equal("true", h2["idempotent-replayed"])
    -- the same publish, spaced and ordered differently, handler_id spelled out
    local spaced = '{ "event" : "note",\n\t"data" : { "n" : 1, "text" : "hello" } ,\r\n' ..
                   '  "handler_id": 0, "targets" : [ "' .. ch .. '" ] }  '
    local st3, h3, body3, j3 = publish(g, spaced, key)
    assert.equal(200, st3, body3)
    assert.same({ id = j.id }, j3)
    assert.equal("true", h3["idempotent-replayed"])
    assert.same({ j.id }, received(s))
    assert.equal(before + 1, published(g))
    s:close()
  end)

  it("replays an array's ids", function()
    local ch, key = unique("ch"), unique("key")
    local s = subscribe(g, ch)
    local before = published(g)
    local batch = { { targets = { ch }, data = 1 }, { targets = { ch, "nobody" }, data = { 2 } } }
    local st, h, body, j = publish(g, batch, key)
    assert.equal(200, st, body)
    assert.equal(2, #j.ids)
    assert.is_nil(h["idempotent-replayed"])
    local st2, h2, body2, j2 = publish(g, " [ " .. cjson.encode(batch[1]) .. " ,\n " .. cjson.encode(batch[2]) .. " ] ", key)
    assert.equal(200, st2, body2)
    assert.same({ ids = j.ids }, j2)
    assert.equal("true", h2["idempotent-replayed"])
    assert.same(j.ids, received(s))
    assert.equal(before + 2, published(g))
    -- the first message alone is another publish than the array
    local st3, _, body3, j3 = publish(g, batch[1], key)
    assert.equal(409, st3, body3)
    assert.equal("idempotency_conflict", j3.error)
    s:close()
  end)

  it("replays the raw form", function()
    local ch, key = unique("ch"), unique("key")
    local s = subscribe(g, ch)
    local headers = { ["Content-Type"] = "application/json", Authorization = "Bearer " .. g.key,
                      ["Idempotency-Key"] = key }
    local path = "/publish?targets=" .. ch .. "&handler_id=7"
    local st, h, body, j = g:request("POST", path, headers, '{"big":12345678901234567890}')
    assert.equal(200, st, body)
    assert.is_nil(h["idempotent-replayed"])
    headers.Connection = nil
    local st2, h2, body2, j2 = g:request("POST", path, headers, '{"big":12345678901234567890}')
    assert.equal(200, st2, body2)
    assert.equal(j.id, j2.id)
    assert.equal("true", h2["idempotent-replayed"])
    assert.same({ j.id }, received(s))
    s:close()
  end)

  it("the same key for a different publish: 409, nothing published", function()
    local ch, key = unique("ch"), unique("key")
    local s = subscribe(g, ch)
    local before = published(g)
    local st, _, body, j = publish(g, { targets = { ch }, data = "first" }, key)
    assert.equal(200, st, body)
    for _, other in ipairs({ { targets = { ch }, data = "second" },
                             { targets = { ch, "more" }, data = "first" },
                             { targets = { ch }, data = "first", handler_id = 1 },
                             { targets = { ch }, data = "first", event = "x" },
                             { { targets = { ch }, data = "first" } } }) do
      local st2, h2, body2, j2 = publish(g, other, key)
      assert.equal(409, st2, body2)
      assert.equal("idempotency_conflict", j2.error)
      assert.is_nil(h2["idempotent-replayed"])
    end
    assert.same({ j.id }, received(s))
    assert.equal(before + 1, published(g))
    -- the first publish still replays
    local st3, h3, _, j3 = publish(g, { targets = { ch }, data = "first" }, key)
    assert.equal(200, st3)
    assert.equal(j.id, j3.id)
    assert.equal("true", h3["idempotent-replayed"])
    s:close()
  end)

  it("is scoped per publisher: other credentials, other keys", function()
    local ch, key = unique("ch"), unique("key")
    local s = subscribe(g, ch)
    local msg = { targets = { ch }, data = "same" }
    local st1, h1, b1, j1 = publish(g, msg, key)
    local st2, h2, b2, j2 = publish(g, msg, key, OTHER)
    assert.equal(200, st1, b1)
    assert.equal(200, st2, b2)
    assert.is_nil(h1["idempotent-replayed"])
    assert.is_nil(h2["idempotent-replayed"])
    assert.are_not.equal(j1.id, j2.id)
    -- each publisher's repeat gets its own first answer
    local _, h3, _, j3 = publish(g, msg, key, OTHER)
    local _, h4, _, j4 = publish(g, msg, key)
    assert.equal(j2.id, j3.id)
    assert.equal("true", h3["idempotent-replayed"])
    assert.equal(j1.id, j4.id)
    assert.equal("true", h4["idempotent-replayed"])
    -- and a different publish under another publisher's key is no conflict
    local key2 = unique("key")
    assert.equal(200, (publish(g, { targets = { ch }, data = "a" }, key2)))
    local st5, h5 = publish(g, { targets = { ch }, data = "b" }, key2, OTHER)
    assert.equal(200, st5)
    assert.is_nil(h5["idempotent-replayed"])
    assert.equal(4, #received(s))
    -- a refused publisher gets no replay either
    local st6 = publish(g, msg, key, "wrong-token-wrong-token")
    assert.equal(403, st6)
    s:close()
  end)

  it("refuses a bad key with 400 naming Idempotency-Key, publishing nothing", function()
    local ch = unique("ch")
    local before = published(g)
    for _, key in ipairs({ "", ("k"):rep(129), "a\1b", "a\tb", "a\127b", "caf\195\169" }) do
      local st, _, body, j = publish(g, { targets = { ch }, data = 1 }, key)
      assert.equal(400, st, ("%q: %s"):format(key, tostring(body)))
      assert.equal("Idempotency-Key", j.field)
    end
    assert.equal(before, published(g))
    -- 128 printable characters are fine
    local long = ("~ !"):rep(43):sub(1, 128)
    local st, _, body = publish(g, { targets = { ch }, data = 1 }, long)
    assert.equal(200, st, body)
    local st2, h2 = publish(g, { targets = { ch }, data = 1 }, long)
    assert.equal(200, st2)
    assert.equal("true", h2["idempotent-replayed"])
  end)

  it("a failed publish records nothing: its retry publishes", function()
    local ch, key = unique("ch"), unique("key")
    local st, _, body, j = publish(g, { targets = { ch }, data = 1, bogus = true }, key)
    assert.equal(400, st, body)
    assert.equal("bogus", j.field)
    local st2, h2, body2 = publish(g, { targets = { ch }, data = 1 }, key)
    assert.equal(200, st2, body2)
    assert.is_nil(h2["idempotent-replayed"])
  end)

  it("concurrent repeats: one publishes, every answer has its id", function()
    local ch, key = unique("ch"), unique("key")
    local s = subscribe(g, ch)
    local before = published(g)
    local body = cjson.encode({ targets = { ch }, data = { burst = true } })
    local req = g:build_request("POST", "/publish", {
      ["Content-Type"] = "application/json", Authorization = "Bearer " .. g.key,
      ["Idempotency-Key"] = key, Connection = "close" }, body)
    local conns = {}
    for i = 1, 20 do conns[i] = assert(g:connect(WAIT)) end
    for _, c in ipairs(conns) do assert(c:send(req)) end
    local ids, replayed = {}, 0
    for i, c in ipairs(conns) do
      local st, h, b = T.read_response(c)
      c:close()
      assert.equal(200, st, "answer " .. i .. ": " .. tostring(b))
      ids[cjson.decode(b).id] = true
      if h["idempotent-replayed"] == "true" then replayed = replayed + 1 end
    end
    local distinct = {}
    for id in pairs(ids) do distinct[#distinct + 1] = id end
    assert.equal(1, #distinct)
    assert.equal(19, replayed)
    assert.same(distinct, received(s))
    assert.equal(before + 1, published(g))
    s:close()
  end)

  it("tinysse.publish takes a key: a repeat returns the id, publishes nothing; another payload raises", function()
    local ch, key = unique("ch"), unique("key")
    local s = subscribe(g, ch)
    local before = published(g)
    local r = g:script_publish(ch, key, "one", 2)
    assert.is_true(r[1].ok, tostring(r[1].res))
    assert.is_true(r[2].ok, tostring(r[2].res))
    assert.truthy(r[1].res:match("^%d+%-%d+$"))
    assert.equal(r[1].res, r[2].res)
    -- again from another hook call (with --workers 2, maybe another worker)
    for _ = 1, 3 do
      local again = g:script_publish(ch, key, "one")
      assert.same({ ok = true, res = r[1].res }, again[1])
    end
    local ev = s:message(WAIT)
    assert.equal(r[1].res, ev.id)
    assert.equal("scripted", ev.event)
    assert.same({ id = r[1].res, handler_id = 3, data = { v = "one" } }, ev.json)
    assert.same({}, received(s))
    assert.equal(before + 1, published(g))
    local bad = g:script_publish(ch, key, "two")
    assert.is_false(bad[1].ok)
    assert.truthy(tostring(bad[1].res):find("idempotency_conflict", 1, true), tostring(bad[1].res))
    -- a bad key raises too
    bad = g:script_publish(ch, ("k"):rep(129), "one")
    assert.is_false(bad[1].ok)
    assert.truthy(tostring(bad[1].res):find("printable", 1, true), tostring(bad[1].res))
    assert.same({}, received(s))
    assert.equal(before + 1, published(g))
    -- a script's keys are its own: an HTTP publisher's same key is another
    local st, h = publish(g, { targets = { ch }, handler_id = 3, event = "scripted", data = { v = "one" } }, key)
    assert.equal(200, st)
    assert.is_nil(h["idempotent-replayed"])
    s:close()
  end)
end)

describe("Idempotency-Key limits", function()
  it("forgets a key after --idempotency-window", function()
    local g = T.start({ args = { "--idempotency-window", "1" } })
    finally(function() g:stop() end)
    local ch, key = unique("ch"), unique("key")
    local s = subscribe(g, ch)
    local msg = { targets = { ch }, data = "again" }
    local st, _, body, j = publish(g, msg, key)
    local t0 = socket.gettime()
    assert.equal(200, st, body)
    local st2, h2, _, j2 = publish(g, msg, key)
    assert.equal(200, st2)
    if socket.gettime() - t0 < 0.8 then -- certainly inside the window
      assert.equal("true", h2["idempotent-replayed"])
      assert.equal(j.id, j2.id)
    end
    T.sleep(1.5 - (socket.gettime() - t0))
    local st3, h3, _, j3 = publish(g, msg, key)
    assert.equal(200, st3)
    assert.is_nil(h3["idempotent-replayed"])
    assert.are_not.equal(j.id, j3.id)
    -- and the new publish is remembered afresh
    local st4, h4, _, j4 = publish(g, msg, key)
    assert.equal(200, st4)
    assert.equal(j3.id, j4.id)
    assert.equal("true", h4["idempotent-replayed"])
    local got = received(s)
    assert.equal(j.id, got[1])
    assert.equal(j3.id, got[#got])
    assert.equal(2, #got)
    s:close()
    assert.is_true(g:stop())
  end)

  it("remembers at most --idempotency-keys keys, forgetting the oldest", function()
    local g = T.start({ args = { "--idempotency-keys", "2" } })
    finally(function() g:stop() end)
    local ch = unique("ch")
    local msg = { targets = { ch }, data = "x" }
    local keys, ids = {}, {}
    for i = 1, 4 do
      keys[i] = unique("key")
      local st, _, body, j = publish(g, msg, keys[i])
      assert.equal(200, st, body)
      ids[i] = j.id
    end
    -- the newest are still known
    local st4, h4, _, j4 = publish(g, msg, keys[4])
    assert.equal(200, st4)
    assert.equal("true", h4["idempotent-replayed"])
    assert.equal(ids[4], j4.id)
    -- the first was forgotten after three other keys: a repeat publishes
    local st1, h1, _, j1 = publish(g, msg, keys[1])
    assert.equal(200, st1)
    assert.is_nil(h1["idempotent-replayed"])
    assert.are_not.equal(ids[1], j1.id)
    assert.is_true(g:stop())
  end)
end)
