-- scripts/static_tokens.lua: fixed subscriber and publisher token tables.
local h = dofile((os.getenv("TINYSSE_ROOT") or ".") .. "/spec/scripts/helper.lua")

-- The example tokens written in the script.
local ALICE, BOB = "sub-0f3c9a1e7b5d4c2a9e8f", "sub-7d2e4b6a1c9f8e3d5a0b"
local PUBLISHER = "pub-3a8c1f9e6b2d7a4c0e5f"

local function publish_req(authorization)
  return h.req({ method = "POST", path = "/publish", body = '{"targets":["all"],"data":1}',
                 headers = { authorization = authorization } })
end

describe("static_tokens.lua", function()
  local hooks
  before_each(function() hooks = h.load_script("static_tokens") end)

  it("maps known subscriber tokens to user and role", function()
    assert.are.same({ "alice", "admin" }, { hooks.validate_token(ALICE, h.req()) })
    assert.are.same({ "bob", "user" }, { hooks.validate_token(BOB, h.req()) })
  end)

  it("rejects unknown, near-miss and publisher tokens", function()
    for _, token in ipairs({ "nope", ALICE:sub(1, -2), ALICE .. "x", ALICE:upper(), " " .. ALICE,
                             PUBLISHER, "" }) do
      assert.are.same({ nil, "unknown token" }, { hooks.validate_token(token, h.req()) })
    end
    assert.are.same({ nil, "unknown token" }, { hooks.validate_token(nil, h.req()) })
  end)

  it("lets a known publisher token publish", function()
    assert.is_true(hooks.authorize_publish(publish_req("Bearer " .. PUBLISHER)))
    assert.is_true(hooks.authorize_publish(publish_req("bearer " .. PUBLISHER)))
  end)

  it("refuses publishing without a known Bearer token", function()
    local cases = {
      { nil, "missing Authorization" }, { "", "missing Authorization" },
      { PUBLISHER, "missing Authorization" }, { "Basic " .. PUBLISHER, "missing Authorization" },
      { "Bearer " .. PUBLISHER .. " extra", "missing Authorization" },
      { "Bearer wrong", "unknown publisher token" },
      { "Bearer " .. PUBLISHER:sub(1, -2), "unknown publisher token" },
      { "Bearer " .. ALICE, "unknown publisher token" },
    }
    for _, c in ipairs(cases) do
      local ok, why = hooks.authorize_publish(publish_req(c[1]))
      assert.is_false(ok)
      assert.matches(c[2], why, 1, true)
    end
  end)
end)
