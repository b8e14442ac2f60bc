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
end)
