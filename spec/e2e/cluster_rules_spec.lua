-- One publish path: a message breaking a rule is refused with the same
-- message by POST /publish and by tinysse.publish in cluster mode, checked before Redis, and no publisher
-- can name the gateway's private channels.
local T = require "support"
local R = require "rules_support"

describe("one set of publish rules in cluster mode", function()
  local r
  setup(function() r = T.start_redis() end)
  teardown(function() if r then r:stop() end end)

  it("refuses each bad script publish before Redis, as POST /publish does", function()
    local key = "rules" .. math.random(1, 1e9)
    local g = T.start({ script = R.script_path(), env = { TINYSSE_ROOT = T.root },
                        args = { "--redis", r:url(), "--redis-key", key } })
    finally(function() if g:alive() then g:kill() end end)
    local s = g:stream("/events?token=watch:user")
    assert.are.equal(200, s.status)
    R.check_all(g)
    -- nothing bad reached Redis: the stream holds the two valid messages
    assert.are.equal("2", r:cli("XLEN", key))
    assert.are.equal(2, #s:drain(1))
    -- and no node dropped anything as a bad entry
    assert.are.equal(0, g:metric("tinysse_redis_bad_entries_total"))
    s:close()
    assert.is_true(g:stop())
  end)
end)
