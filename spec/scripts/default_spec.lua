-- scripts/default.lua: HS256 JWT subscribers, token issuing for publishers,
-- anonymous access only when the operator opts in.
local h = dofile((os.getenv("TINYSSE_ROOT") or ".") .. "/spec/scripts/helper.lua")
local tinysse, cjson = h.tinysse, h.cjson

local SECRET = "default-spec-secret"

local function issue(hooks, body)
  return hooks.issue_token(h.req({ method = "POST", path = "/auth/sse-token",
                                   publisher = true, body = body }))
end

describe("default.lua", function()
  local hooks
  before_each(function() hooks = h.load_script("default", { TINYSSE_SECRET = SECRET }) end)

  it("leaves publishing to the publish key", function()
    assert.is_nil(hooks.authorize_publish)
    assert.is_function(hooks.validate_token)
    assert.is_function(hooks.issue_token)
  end)

  describe("validate_token", function()
    it("accepts a JWT signed with TINYSSE_SECRET", function()
      local exp = tinysse.time() + 60
      local token = tinysse.jwt_sign({ sub = "42", role = "admin", exp = exp }, SECRET)
      assert.are.same({ "42", "admin", exp }, { hooks.validate_token(token, h.req()) })
    end)

    it("defaults the role to user and turns a numeric sub into a string", function()
      local user, role, exp = hooks.validate_token(tinysse.jwt_sign({ sub = 42 }, SECRET), h.req())
      assert.are.equal("42", user)
      assert.are.equal("user", role)
      assert.is_nil(exp)
    end)

    it("rejects other secrets, expired, unsigned and garbage tokens", function()
      local now = tinysse.time()
      local cases = {
        { tinysse.jwt_sign({ sub = "42" }, "other"), "bad_signature" },
        { tinysse.jwt_sign({ sub = "42" }, tinysse.secret()), "bad_signature" },
        { tinysse.jwt_sign({ sub = "42", exp = now - 1 }, SECRET), "expired" },
        { h.raw_token('{"alg":"none"}', '{"sub":"42"}'), "unsupported_alg" },
        { "not-a-token", "malformed" },
      }
      for _, c in ipairs(cases) do
        assert.are.same({ nil, c[2] }, { hooks.validate_token(c[1], h.req()) })
      end
    end)

    it("rejects tokens without a usable sub or role", function()
      for _, claims in ipairs({ {}, { sub = "" }, { sub = 4.5 }, { sub = { 1 } },
                                { sub = "1", role = "" }, { sub = "1", role = 7 } }) do
        local user, why = hooks.validate_token(tinysse.jwt_sign(claims, SECRET), h.req())
        assert.is_nil(user)
        assert.is_string(why)
      end
    end)
  end)

  describe("issue_token", function()
    it("signs a token for the publisher's user, role and ttl", function()
      local token, ttl = issue(hooks, '{"user":"42","role":"admin","ttl":60}')
      assert.are.equal(60, ttl)
      local claims = assert(tinysse.jwt_verify(token, SECRET))
      assert.are.equal("42", claims.sub)
      assert.are.equal("admin", claims.role)
      assert.is_true(math.abs(claims.exp - (tinysse.time() + 60)) <= 1)
      local user, role, exp = hooks.validate_token(token, h.req())
      assert.are.same({ "42", "admin", claims.exp }, { user, role, exp })
    end)

    it("defaults role and ttl, caps ttl at a day, accepts a numeric user", function()
      local token, ttl = issue(hooks, '{"user":42}')
      assert.are.equal(3600, ttl)
      local user, role = hooks.validate_token(token, h.req())
      assert.are.same({ "42", "user" }, { user, role })
      local _, capped = issue(hooks, '{"user":"7","ttl":999999}')
      assert.are.equal(86400, capped)
    end)

    it("explains bad bodies", function()
      local cases = {
        { nil, "JSON object" }, { "", "JSON object" }, { "[1]", "JSON object" },
        { "{nope", "not valid JSON" },
        { '{"role":"admin"}', '"user"' }, { '{"user":""}', '"user"' },
        { '{"user":4.5}', '"user"' }, { '{"user":{}}', '"user"' },
        { '{"user":"1","role":""}', '"role"' }, { '{"user":"1","role":5}', '"role"' },
        { '{"user":"1","ttl":"long"}', '"ttl"' }, { '{"user":"1","ttl":0}', '"ttl"' },
        { '{"user":"1","ttl":-5}', '"ttl"' },
      }
      for _, c in ipairs(cases) do
        local token, why = issue(hooks, c[1])
        assert.is_nil(token)
        assert.matches(c[2], why, 1, true)
      end
    end)

    it("refuses callers without the publish key", function()
      local token, why = hooks.issue_token(h.req({ method = "POST", body = '{"user":"42"}' }))
      assert.is_nil(token)
      assert.are.equal("token issuing needs the publish key", why)
    end)
  end)

  describe("without TINYSSE_SECRET", function()
    it("signs and verifies with the gateway's instance secret", function()
      local plain = h.load_script("default", {})
      local token = tinysse.jwt_sign({ sub = "9" }, tinysse.secret())
      assert.are.equal("9", (plain.validate_token(token, h.req())))
      assert.is_nil((plain.validate_token(tinysse.jwt_sign({ sub = "9" }, SECRET), h.req())))
      local issued = issue(plain, '{"user":"5"}')
      assert.is_table(tinysse.jwt_verify(issued, tinysse.secret()))
    end)

    it("treats an empty TINYSSE_SECRET as unset", function()
      local plain = h.load_script("default", { TINYSSE_SECRET = "" })
      assert.is_nil((plain.validate_token(tinysse.jwt_sign({ sub = "9" }, ""), h.req())))
      assert.are.equal("9", (plain.validate_token(tinysse.jwt_sign({ sub = "9" }, tinysse.secret()), h.req())))
    end)
  end)

  describe("anonymous access", function()
    it("gives anyone a short-lived anonymous token when TINYSSE_ANONYMOUS=1", function()
      local anon = h.load_script("default", { TINYSSE_SECRET = SECRET, TINYSSE_ANONYMOUS = "1" })
      local token, ttl = anon.issue_token(h.req({ method = "POST" }))
      assert.are.equal(3600, ttl)
      local user, role, exp = anon.validate_token(token, h.req())
      assert.matches("^anon%-%x%x%x%x%x%x%x%x$", user)
      assert.are.equal("anonymous", role)
      assert.is_true(exp > tinysse.time())
      local other = anon.validate_token((anon.issue_token(h.req())), h.req())
      assert.are_not.equal(user, other)
      -- Publishers still get the token they ask for.
      local named = anon.issue_token(h.req({ publisher = true, body = '{"user":"42"}' }))
      assert.are.equal("42", (anon.validate_token(named, h.req())))
    end)

    it("stays off for any other value, and old anonymous tokens stop working", function()
      local anon = h.load_script("default", { TINYSSE_SECRET = SECRET, TINYSSE_ANONYMOUS = "1" })
      local token = anon.issue_token(h.req())
      for _, v in ipairs({ "0", "true", "yes", "" }) do
        local closed = h.load_script("default", { TINYSSE_SECRET = SECRET, TINYSSE_ANONYMOUS = v })
        assert.are.same({ nil, "token issuing needs the publish key" }, { closed.issue_token(h.req()) })
      end
      assert.are.same({ nil, "anonymous access is disabled" }, { hooks.validate_token(token, h.req()) })
    end)
  end)
end)
