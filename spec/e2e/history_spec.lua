-- GET /history: a channel's held messages, oldest first, with since, limit,
-- the evicted flag, and who may ask (publishers, and stream tokens whose
-- channels include the channel).
local T = require "support"
local cjson = require "cjson"

describe("GET /history", function()
  local g
  setup(function()
    g = T.start({ args = { "--buffer", "20", "--channel-history", "4" } })
  end)
  teardown(function() g:stop() end)

  local function publish(targets, n, event)
    local st, _, body, j = g:publish({ targets = targets, handler_id = 3, data = { n = n }, event = event })
    assert.are.equal(200, st, body)
    return j.id
  end
  local function history(query, headers)
    local st, _, body, j = g:request("GET", "/history?" .. query, headers)
    return st, j, body
  end
  local KEY = { Authorization = "Bearer " .. T.publish_key }

  it("answers a channel's messages oldest first, with since and limit", function()
    local a = publish({ "user:h1" }, 1, "note")
    local b = publish({ "user:h1", "role:x" }, 2)
    publish({ "role:other" }, 99)
    local c = publish({ "user:h1" }, 3)
    local st, j = history("channel=user:h1", KEY)
    assert.are.equal(200, st)
    assert.are.equal("user:h1", j.channel)
    assert.are.equal(3, #j.messages)
    assert.are.same({ a, b, c }, { j.messages[1].id, j.messages[2].id, j.messages[3].id })
    assert.are.same({ n = 1 }, j.messages[1].data)
    assert.are.equal(3, j.messages[1].handler_id)
    assert.are.equal("note", j.messages[1].event)
    assert.is_nil(j.messages[2].event)
    assert.is_false(j.evicted)
    assert.is_false(j.more)
    st, j = history("channel=user:h1&since=" .. a, KEY)
    assert.are.same({ b, c }, { j.messages[1].id, j.messages[2].id })
    st, j = history("channel=user:h1&limit=1", KEY)
    assert.are.equal(1, #j.messages)
    assert.are.equal(a, j.messages[1].id)
    assert.is_true(j.more)
    -- the routing targets are never in it
    local _, _, body = history("channel=user:h1", KEY)
    assert.is_nil(body:find("targets", 1, true))
  end)

  it("says when older messages were evicted, and keeps the channel's last ones", function()
    local first = publish({ "user:h2" }, 1)
    for i = 2, 8 do publish({ "user:h2" }, i) end
    for i = 1, 40 do publish({ "role:busy" }, 100 + i) end
    local st, j = history("channel=user:h2", KEY)
    assert.are.equal(200, st)
    assert.are.equal(4, #j.messages) -- --channel-history 4; the ring moved on
    assert.are.same({ n = 5 }, j.messages[1].data)
    assert.is_true(j.evicted)
    st, j = history("channel=user:h2&since=" .. first, KEY)
    assert.is_true(j.evicted, "messages after since were lost")
    st, j = history("channel=user:h2&since=" .. j.messages[1].id, KEY)
    assert.is_false(j.evicted, "nothing after the oldest held one was lost")
    assert.are.equal(3, #j.messages)
  end)

  it("lets a stream token read its own channels only", function()
    publish({ "user:h3" }, 1)
    local st, j = history("channel=user:h3&token=h3:r")
    assert.are.equal(200, st)
    assert.are.equal(1, #j.messages)
    st, j = history("channel=user:h3", { Authorization = "Bearer h3:r" })
    assert.are.equal(200, st)
    st, j = history("channel=user:h3&token=other:r")
    assert.are.equal(403, st)
    assert.are.equal("forbidden", j.error)
    st = history("channel=user:h3&token=nonsense")
    assert.are.equal(401, st)
    st, j = history("channel=user:h3")
    assert.are.equal(401, st)
  end)

  it("refuses bad input with a field named", function()
    for q, field in pairs({ [""] = "channel", ["channel="] = "channel", ["channel=a&since=x"] = "since",
                            ["channel=a&limit=0"] = "limit", ["channel=a&limit=5000"] = "limit",
                            ["channel=a&limit=3x"] = "limit" }) do
      local st, j = history(q, KEY)
      assert.are.equal(400, st, q)
      assert.are.equal(field, j.field, q)
    end
    local st = g:request("POST", "/history?channel=a", KEY, "")
    assert.are.equal(405, st)
  end)
end)
