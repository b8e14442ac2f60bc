-- scripts/tenant_channels.lua: per-tenant channels and tenant-scoped publishing.
local h = dofile((os.getenv("TINYSSE_ROOT") or ".") .. "/spec/scripts/helper.lua")
local tinysse = h.tinysse

local SECRET = "tenant-spec-secret"
local ACME_PUBLISHER = tinysse.jwt_sign({ tenant = "acme", scope = "publish" }, SECRET)

local function publish_req(body, token, query)
  return h.req({ method = "POST", path = "/publish", body = body, query = query or {},
                 headers = { authorization = token and "Bearer " .. token or nil } })
end

local function allowed(body, token, query)
  return h.load_script("tenant_channels", { JWT_SECRET = SECRET })
    .authorize_publish(publish_req(body, token or ACME_PUBLISHER, query))
end

describe("tenant_channels.lua", function()
  local hooks
  before_each(function() hooks = h.load_script("tenant_channels", { JWT_SECRET = SECRET }) end)

  it("refuses to load without JWT_SECRET", function()
    assert.matches("set JWT_SECRET", h.error_of(h.load_script, "tenant_channels", {}))
  end)

  describe("subscribers", function()
    it("get the tenant's channels for their role and user", function()
      local exp = tinysse.time() + 60
      local token = tinysse.jwt_sign({ tenant = "acme", sub = "42", role = "admin", exp = exp }, SECRET)
      local user, role, expires = hooks.validate_token(token, h.req())
      assert.are.same({ "acme:42", "admin", exp }, { user, role, expires })
      assert.are.same({ "tenant:acme", "tenant:acme:role:admin", "tenant:acme:user:42" },
        hooks.channels(user, role, h.req()))
    end)

    it("default to role user", function()
      local token = tinysse.jwt_sign({ tenant = "globex", sub = 7 }, SECRET)
      local user, role = hooks.validate_token(token, h.req())
      assert.are.same({ "tenant:globex", "tenant:globex:role:user", "tenant:globex:user:7" },
        hooks.channels(user, role, h.req()))
    end)

    it("are rejected without a usable tenant, sub or role, or with a bad token", function()
      local cases = {
        { tinysse.jwt_sign({ sub = "1" }, SECRET), "tenant" },
        { tinysse.jwt_sign({ tenant = "acme:evil", sub = "1" }, SECRET), "tenant" },
        { tinysse.jwt_sign({ tenant = "", sub = "1" }, SECRET), "tenant" },
        { tinysse.jwt_sign({ tenant = "acme" }, SECRET), "sub" },
        { tinysse.jwt_sign({ tenant = "acme", sub = "a:b" }, SECRET), "sub" },
        { tinysse.jwt_sign({ tenant = "acme", sub = "1", role = "x:y" }, SECRET), "role" },
        { tinysse.jwt_sign({ tenant = "acme", sub = "1" }, "other"), "bad_signature" },
        { tinysse.jwt_sign({ tenant = "acme", sub = "1", exp = tinysse.time() - 1 }, SECRET), "expired" },
      }
      for _, c in ipairs(cases) do
        local user, why = hooks.validate_token(c[1], h.req())
        assert.is_nil(user)
        assert.matches(c[2], why, 1, true)
      end
    end)
  end)

  describe("publishers", function()
    it("may publish inside their tenant", function()
      assert.is_true(allowed('{"targets":["tenant:acme","tenant:acme:user:1"],"data":1}'))
      assert.is_true(allowed('[{"targets":["tenant:acme:role:admin"],"data":1},'
        .. '{"targets":["tenant:acme"],"data":2}]'))
      assert.is_true(allowed("{\"x\":1}", nil, { targets = "tenant:acme:user:1,tenant:acme" }))
    end)

    it("accept scope as a space-separated string or an array", function()
      local t1 = tinysse.jwt_sign({ tenant = "acme", scope = "read publish" }, SECRET)
      local t2 = tinysse.jwt_sign({ tenant = "acme", scope = { "read", "publish" } }, SECRET)
      assert.is_true(allowed('{"targets":["tenant:acme"]}', t1))
      assert.is_true(allowed('{"targets":["tenant:acme"]}', t2))
    end)

    it("may not publish outside their tenant", function()
      local bodies = {
        '{"targets":["tenant:globex"],"data":1}',
        '{"targets":["tenant:acmecorp"],"data":1}',
        '{"targets":["tenant:acme","all"],"data":1}',
        '{"targets":["role:admin"],"data":1}',
        '{"targets":["xtenant:acme"],"data":1}',
        '[{"targets":["tenant:acme"]},{"targets":["tenant:globex:user:1"]}]',
      }
      for _, body in ipairs(bodies) do
        local ok, why = allowed(body)
        assert.is_false(ok)
        assert.matches("outside tenant acme", why, 1, true)
      end
      local ok, why = allowed('{"targets":["tenant:acme"]}', nil, { targets = "tenant:acme,all" })
      assert.is_false(ok)
      assert.matches("target all is outside tenant acme", why, 1, true)
    end)

    it("are refused with bad bodies", function()
      for _, body in ipairs({ "nope", "", '{"data":1}', '{"targets":[]}', "[]", "42",
                              '[{"targets":["tenant:acme"]},{"data":1}]', '{"targets":[7]}' }) do
        local ok, why = allowed(body)
        assert.is_false(ok)
        assert.is_string(why)
      end
      assert.is_false((allowed("{}", nil, { targets = "" })))
    end)

    it("need a valid token with the publish scope and a tenant", function()
      local body = '{"targets":["tenant:acme"]}'
      local cases = {
        { nil, "missing Authorization" },
        { tinysse.jwt_sign({ tenant = "acme", scope = "publish" }, "other"), "bad_signature" },
        { tinysse.jwt_sign({ tenant = "acme", scope = "publish", exp = tinysse.time() - 1 }, SECRET), "expired" },
        { tinysse.jwt_sign({ tenant = "acme" }, SECRET), "publish" },
        { tinysse.jwt_sign({ tenant = "acme", scope = "publisher" }, SECRET), "publish" },
        { tinysse.jwt_sign({ tenant = "acme", sub = "1", role = "admin" }, SECRET), "publish" },
        { tinysse.jwt_sign({ scope = "publish" }, SECRET), "tenant" },
        { tinysse.jwt_sign({ tenant = "ac:me", scope = "publish" }, SECRET), "tenant" },
      }
      for _, c in ipairs(cases) do
        local ok, why = hooks.authorize_publish(publish_req(body, c[1]))
        assert.is_false(ok)
        assert.matches(c[2], why, 1, true)
      end
      assert.is_false((hooks.authorize_publish(h.req({ body = body, headers = {
        authorization = "Basic " .. ACME_PUBLISHER } }))))
    end)
  end)
end)
