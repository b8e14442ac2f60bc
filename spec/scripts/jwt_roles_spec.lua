-- scripts/jwt_roles.lua: HS256 JWT with a roles array claim.
local h = dofile((os.getenv("TINYSSE_ROOT") or ".") .. "/spec/scripts/helper.lua")
local tinysse = h.tinysse

local SECRET = "jwt-roles-spec-secret"

describe("jwt_roles.lua", function()
  local hooks
  before_each(function() hooks = h.load_script("jwt_roles", { JWT_SECRET = SECRET }) end)

  it("refuses to load without JWT_SECRET", function()
    assert.matches("set JWT_SECRET", h.error_of(h.load_script, "jwt_roles", {}))
    assert.matches("set JWT_SECRET", h.error_of(h.load_script, "jwt_roles", { JWT_SECRET = "" }))
  end)

  it("joins the roles claim into the role", function()
    local exp = tinysse.time() + 60
    local token = tinysse.jwt_sign({ sub = "42", roles = { "admin", "billing" }, exp = exp }, SECRET)
    assert.are.same({ "42", "admin,billing", exp }, { hooks.validate_token(token, h.req()) })
  end)

  it("accepts a numeric sub and an empty roles array", function()
    local token = h.raw_token(h.HS256, '{"sub":42,"roles":[]}', SECRET)
    assert.are.same({ "42", "" }, { hooks.validate_token(token, h.req()) })
  end)

  it("allows 30 seconds of clock skew on exp, not more", function()
    local now = tinysse.time()
    local late = tinysse.jwt_sign({ sub = "1", roles = { "a" }, exp = now - 10 }, SECRET)
    assert.are.equal("1", (hooks.validate_token(late, h.req())))
    local expired = tinysse.jwt_sign({ sub = "1", roles = { "a" }, exp = now - 60 }, SECRET)
    assert.are.same({ nil, "expired" }, { hooks.validate_token(expired, h.req()) })
  end)

  it("rejects bad signatures and bad claims", function()
    local cases = {
      { tinysse.jwt_sign({ sub = "1", roles = { "a" } }, "other"), "bad_signature" },
      { h.raw_token('{"alg":"none"}', '{"sub":"1","roles":["a"]}'), "unsupported_alg" },
      { tinysse.jwt_sign({ sub = "1" }, SECRET), "no roles array" },
      { tinysse.jwt_sign({ sub = "1", roles = "admin" }, SECRET), "no roles array" },
      { tinysse.jwt_sign({ sub = "1", roles = { admin = true } }, SECRET), "must be an array" },
      { tinysse.jwt_sign({ sub = "1", roles = { "a,b" } }, SECRET), "bad role" },
      { tinysse.jwt_sign({ sub = "1", roles = { "user:7" } }, SECRET), "bad role" },
      { tinysse.jwt_sign({ sub = "1", roles = { "" } }, SECRET), "bad role" },
      { tinysse.jwt_sign({ sub = "1", roles = { 5 } }, SECRET), "bad role" },
      { tinysse.jwt_sign({ roles = { "a" } }, SECRET), "sub" },
      { tinysse.jwt_sign({ sub = 1.5, roles = { "a" } }, SECRET), "sub" },
    }
    for _, c in ipairs(cases) do
      local user, why = hooks.validate_token(c[1], h.req())
      assert.is_nil(user)
      assert.matches(c[2], why, 1, true)
    end
  end)

  it("gives all, one channel per role and the user's channel", function()
    assert.are.same({ "all", "role:admin", "role:billing", "user:42" },
      hooks.channels("42", "admin,billing", h.req()))
    assert.are.same({ "all", "user:42" }, hooks.channels("42", "", h.req()))
  end)
end)
