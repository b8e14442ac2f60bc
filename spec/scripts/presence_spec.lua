-- scripts/presence.lua: default.lua's tokens plus joined/left announcements.
local h = dofile((os.getenv("TINYSSE_ROOT") or ".") .. "/spec/scripts/helper.lua")
local tinysse = h.tinysse

describe("presence.lua", function()
  local hooks, sent, real_publish, real_count
  before_each(function()
    sent = {}
    real_publish, real_count = tinysse.publish, tinysse.count
    -- the gateway's publish and count, recorded
    tinysse.publish = function(targets, data, handler_id, event)
      sent[#sent + 1] = { targets = targets, data = data, handler_id = handler_id, event = event }
      return "1-" .. #sent
    end
    tinysse.count = function(channel) return channel == "role:crew" and 3 or 0 end
    hooks = h.load_script("presence", { TINYSSE_SECRET = "presence-secret" })
  end)
  after_each(function() tinysse.publish, tinysse.count = real_publish, real_count end)

  it("keeps default.lua's token checks", function()
    local token = tinysse.jwt_sign({ sub = "7", role = "crew", exp = tinysse.time() + 60 }, "presence-secret")
    local user, role = hooks.validate_token(token, h.req())
    assert.are.same({ "7", "crew" }, { user, role })
    assert.is_nil((hooks.validate_token(token .. "x", h.req())))
    assert.is_function(hooks.issue_token)
  end)

  it("announces a join to the user's role with the online count", function()
    hooks.on_connect({ id = "0-1", user_id = "7", role = "crew", channels = { "all", "role:crew", "user:7" } })
    assert.are.equal(1, #sent)
    assert.are.same({ "role:crew" }, sent[1].targets)
    assert.are.equal("presence.joined", sent[1].event)
    assert.are.same({ user = "7", online = 3 }, sent[1].data)
  end)

  it("announces a departure whatever the reason", function()
    for _, reason in ipairs({ "closed", "slow", "expired" }) do
      hooks.on_disconnect({ id = "0-1", user_id = "8", role = "ops", channels = {} }, reason)
    end
    assert.are.equal(3, #sent)
    for _, m in ipairs(sent) do
      assert.are.equal("presence.left", m.event)
      assert.are.same({ "role:ops" }, m.targets)
      assert.are.same({ user = "8", online = 0 }, m.data)
    end
  end)
end)
