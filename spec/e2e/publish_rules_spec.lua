-- One publish path: a message breaking a rule is refused with the same
-- message by POST /publish and by tinysse.publish (local mode), and no publisher
-- can name the gateway's private channels.
local T = require "support"
local R = require "rules_support"

describe("one set of publish rules", function()
  it("refuses each bad message identically over HTTP and from a script (local mode)", function()
    local g = T.start({ script = R.script_path(), env = { TINYSSE_ROOT = T.root } })
    finally(function() if g:alive() then g:kill() end end)
    local s = g:stream("/events?token=watch:user")
    assert.are.equal(200, s.status)
    local before = R.check_all(g)
    -- only the two valid ones were published, and arrived
    local got = s:drain(0.5)
    assert.are.equal(2, #got)
    assert.are.equal(before + 2, g:metric("tinysse_messages_published_total"))
    s:close()
    assert.is_true(g:stop())
  end)

  it("keeps every publisher out of the status page's private channel", function()
    local g = T.start()
    finally(function() if g:alive() then g:kill() end end)
    local st, _, _, j = g:publish({ targets = { "\1status" }, data = 1 })
    assert.are.equal(400, st)
    assert.are.equal("targets", j.field)
    assert.truthy(j.message:find("private", 1, true), j.message)
    -- the raw form too
    st = g:request("POST", "/publish?targets=%01status", { Authorization = "Bearer " .. g.key }, "1")
    assert.are.equal(400, st)
    assert.is_true(g:stop())
  end)
end)

