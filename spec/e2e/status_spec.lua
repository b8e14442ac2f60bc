-- The live status page: its HTML, its token (publish key only) and its own
-- SSE stream of the gateway's numbers.
local T = require "support"

describe("the status page", function()
  local g
  setup(function() g = T.start() end)
  teardown(function() g:stop() end)

  it("is served as HTML", function()
    local st, h, body = g:request("GET", "/status")
    assert.are.equal(200, st)
    assert.are.equal("text/html; charset=utf-8", h["content-type"])
    assert.truthy(body:find("/status/events", 1, true))
  end)

  it("hands status tokens to publish-key holders only", function()
    assert.are.equal(401, (g:request("POST", "/status/token", {}, "")))
    assert.are.equal(403, (g:request("POST", "/status/token", { Authorization = "Bearer wrong-key-wrong-key" }, "")))
    local s = g:stream("/status/events?token=12345.abc")
    assert.are.equal(401, s.status)
  end)

  it("streams the gateway's numbers every second, including recent errors", function()
    local st, _, _, j = g:request("POST", "/status/token", { Authorization = "Bearer " .. g.key }, "")
    assert.are.equal(200, st)
    local s = g:stream("/status/events?token=" .. j.token)
    assert.are.equal(200, s.status)
    local user = g:stream("/events?token=st1:user")
    g:stream("/events?token=boom"):close() -- a script error to report
    g:publish({ targets = { "all" }, handler_id = 0, data = 1 })
    local ev
    for _ = 1, 5 do
      ev = s:message(3)
      assert.truthy(ev, "no status event")
      assert.are.equal("tinysse.status", ev.event)
      if ev.json.published_total >= 1 and #ev.json.recent_errors > 0 then break end
    end
    local d = ev.json
    assert.are.equal(2, d.connections) -- the status stream and the user's
    assert.is_true(d.published_total >= 1)
    assert.is_true(d.script_errors_total >= 1)
    assert.truthy(d.recent_errors[#d.recent_errors]:find("validate_token exploded", 1, true))
    -- not part of /channels, and never in the replay buffer
    local _, _, _, ch = g:request("GET", "/channels", { Authorization = "Bearer " .. g.key })
    for name in pairs(ch.channels) do assert.is_nil(name:find("status", 1, true), name) end
    assert.are.equal(1, d.replay_buffer)
    user:close(); s:close()
  end)

  it("sends what it remembers (a sample a second) in each status stream's first event", function()
    T.sleep(2.5) -- samples are taken whether a page watches or not
    g:publish({ targets = { "all" }, handler_id = 0, data = 2 })
    T.sleep(2.1) -- a sample after it
    local _, _, _, j = g:request("POST", "/status/token", { Authorization = "Bearer " .. g.key }, "")
    local function first(s)
      local ev = s:message(3)
      assert.truthy(ev and ev.json, "no first event")
      assert.are.equal("tinysse.status", ev.event)
      return ev.json
    end
    local s = g:stream("/status/events?token=" .. j.token)
    local d = first(s)
    assert.are.same({ "time", "connections", "published_total", "deliveries_total", "slow_total",
      "script_errors_total" }, d.history_fields)
    assert.are.equal(1, d.history_interval)
    local h = d.history
    assert.is_true(#h >= 3, "samples held: " .. #h)
    for i, row in ipairs(h) do
      assert.are.equal(6, #row)
      if i > 1 then
        assert.is_true(row[1] > h[i - 1][1], "oldest first")
        assert.is_true(row[3] >= h[i - 1][3], "cumulative")
      end
    end
    assert.is_true(h[#h][1] <= d.time + 0.001)
    assert.is_true(h[#h][3] >= 2, "the publishes are in the history")
    -- the events after the first are the plain numbers
    local ev = s:message(3)
    assert.truthy(ev and ev.json)
    assert.is_nil(ev.json.history)
    -- a second page (a reload) gets the history too, the first stream does not
    local s2 = g:stream("/status/events?token=" .. j.token)
    assert.is_true(#first(s2).history >= #h)
    for _ = 1, 2 do
      ev = s:message(3)
      assert.truthy(ev and ev.json)
      assert.is_nil(ev.json.history)
    end
    s:close(); s2:close()
  end)
end)
