-- scripts/oidc.lua: RS256/ES256 tokens checked against a JWKS. The
-- standalone module cannot fetch URLs, so tinysse.jwks is stubbed to record
-- the URL and hand back a real key set made from the test keys' JWKs.
local h = dofile((os.getenv("TINYSSE_ROOT") or ".") .. "/spec/scripts/helper.lua")
local tinysse = h.tinysse

local ISSUER = "https://idp.example.test/realms/demo"
local URL = "https://idp.example.test/realms/demo/protocol/openid-connect/certs"

local function sh(cmd)
  local p = assert(io.popen(cmd))
  local out = p:read("a")
  assert(p:close(), "command failed: " .. cmd)
  return out
end

local function read(path)
  local f = assert(io.open(path, "rb"))
  local s = f:read("a")
  f:close()
  return s
end

local function unhex(s)
  return (s:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- Test keys from the openssl CLI: two RSA keys (the second to forge with)
-- and a P-256 key, with the public JWKs the identity provider would publish.
local dir = (sh("mktemp -d /tmp/tinysse-oidc-spec.XXXXXX"):gsub("%s+$", ""))
local function rsa_key(name)
  sh(("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out %s/%s.pem 2>/dev/null"):format(dir, name))
  local modulus = sh(("openssl pkey -in %s/%s.pem -pubout | openssl rsa -pubin -noout -modulus 2>/dev/null")
    :format(dir, name)):match("Modulus=(%x+)")
  return read(dir .. "/" .. name .. ".pem"), tinysse.base64url_encode(unhex(modulus))
end
local RSA_PEM, RSA_N = rsa_key("rsa")
local OTHER_PEM = rsa_key("other")
sh(("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out %s/ec.pem 2>/dev/null"):format(dir))
sh(("openssl pkey -in %s/ec.pem -pubout -outform DER -out %s/ec.der"):format(dir, dir))
local EC_PEM = read(dir .. "/ec.pem")
local ec_point = read(dir .. "/ec.der"):sub(-64) -- the DER ends with 04 || x || y
sh("rm -rf " .. dir)

local JWKS = h.cjson.encode({ keys = {
  { kty = "RSA", kid = "k1", use = "sig", alg = "RS256", n = RSA_N, e = "AQAB" },
  { kty = "EC", kid = "e1", use = "sig", crv = "P-256",
    x = tinysse.base64url_encode(ec_point:sub(1, 32)), y = tinysse.base64url_encode(ec_point:sub(33)) },
} })

local function token(claims, opts)
  local c = { iss = ISSUER, sub = "42", exp = tinysse.time() + 300, roles = { "admin", "billing" } }
  for k, v in pairs(claims or {}) do c[k] = v end
  for k, v in pairs(claims or {}) do if v == false then c[k] = nil end end
  opts = opts or {}
  return tinysse.jwt_sign(c, opts.pem or RSA_PEM, { alg = opts.alg or "RS256", kid = opts.kid or "k1" })
end

describe("oidc.lua", function()
  local real_jwks = tinysse.jwks
  local jwks_calls

  local function load(env)
    local e = { OIDC_JWKS_URL = URL, OIDC_ISSUER = ISSUER }
    for k, v in pairs(env or {}) do e[k] = v or nil end
    return h.load_script("oidc", e)
  end

  before_each(function()
    jwks_calls = {}
    tinysse.jwks = function(source, opts)
      jwks_calls[#jwks_calls + 1] = { source = source, opts = opts }
      return real_jwks(JWKS)
    end
  end)
  after_each(function() tinysse.jwks = real_jwks end)

  it("refuses to load without its required settings, naming them", function()
    assert.matches("set OIDC_JWKS_URL", h.error_of(h.load_script, "oidc", { OIDC_ISSUER = ISSUER }))
    assert.matches("set OIDC_JWKS_URL", h.error_of(h.load_script, "oidc", { OIDC_JWKS_URL = "", OIDC_ISSUER = ISSUER }))
    assert.matches("set OIDC_ISSUER", h.error_of(h.load_script, "oidc", { OIDC_JWKS_URL = URL }))
  end)

  it("refuses bad settings with a clear message", function()
    assert.matches("OIDC_ALGS: HS256 is not one of", h.error_of(load, { OIDC_ALGS = "RS256,HS256" }))
    assert.matches("OIDC_ALGS names no algorithm", h.error_of(load, { OIDC_ALGS = " , " }))
    assert.matches("OIDC_LEEWAY must be a number", h.error_of(load, { OIDC_LEEWAY = "soon" }))
    assert.matches("OIDC_JWKS_REFRESH must be", h.error_of(load, { OIDC_JWKS_REFRESH = "0" }))
  end)

  it("passes on the key set's load error", function()
    tinysse.jwks = real_jwks -- the standalone module refuses URLs
    assert.matches("oidc.lua: OIDC_JWKS_URL: .*only inside the gateway", h.error_of(load))
  end)

  it("makes the key set once, from the URL, with the refresh period", function()
    local hooks = load()
    hooks.validate_token(token(), h.req())
    hooks.validate_token(token(), h.req())
    assert.are.equal(1, #jwks_calls)
    assert.are.same({ source = URL, opts = { refresh = 300 } }, jwks_calls[1])
    load({ OIDC_JWKS_REFRESH = "60" })
    assert.are.same({ refresh = 60 }, jwks_calls[2].opts)
  end)

  it("accepts a good token: user, roles, exp and channels", function()
    local hooks = load()
    local exp = tinysse.time() + 120
    assert.are.same({ "42", "admin,billing", exp }, { hooks.validate_token(token({ exp = exp }), h.req()) })
    assert.are.same({ "all", "role:admin", "role:billing", "user:42" },
      hooks.channels("42", "admin,billing", h.req()))
    assert.are.same({ "all", "user:42" }, hooks.channels("42", "", h.req()))
  end)

  it("accepts ES256 tokens by default and only the algorithms asked for", function()
    local es = token({ sub = "7" }, { pem = EC_PEM, alg = "ES256", kid = "e1" })
    assert.are.equal("7", (load().validate_token(es, h.req())))
    local hooks = load({ OIDC_ALGS = "ES256" })
    assert.are.equal("7", (hooks.validate_token(es, h.req())))
    local user, why = hooks.validate_token(token(), h.req())
    assert.is_nil(user)
    assert.are.equal("alg_not_allowed", why)
  end)

  it("rejects a token with the reason from the verifier", function()
    local hooks = load({ OIDC_AUDIENCE = "tinysse" })
    local now = tinysse.time()
    local cases = {
      { token({ aud = "tinysse", iss = "https://evil.example.test/" }), "bad_issuer" },
      { token({ aud = "someone-else" }), "bad_audience" },
      { token({}), "bad_audience" }, -- no aud at all
      { token({ aud = "tinysse", exp = now - 120 }), "expired" },
      { token({ aud = "tinysse", exp = false }), "missing_claim" },
      { token({ aud = "tinysse" }, { pem = OTHER_PEM }), "bad_signature" },
      { token({ aud = "tinysse" }, { kid = "k9" }), "unknown_kid" },
      { tinysse.jwt_sign({ iss = ISSUER, sub = "1", aud = "tinysse", exp = now + 60 }, "a shared secret"), "alg_not_allowed" },
      { "not a token", "malformed" },
    }
    for i, c in ipairs(cases) do
      local user, why = hooks.validate_token(c[1], h.req())
      assert.is_nil(user, "case " .. i)
      assert.are.equal(c[2], why, "case " .. i)
    end
    assert.are.equal("42", (hooks.validate_token(token({ aud = { "other", "tinysse" } }), h.req())))
  end)

  it("allows OIDC_LEEWAY seconds of clock skew", function()
    local late = token({ exp = tinysse.time() - 10 })
    assert.are.equal("42", (load().validate_token(late, h.req())))
    assert.are.same({ nil, "expired" }, { load({ OIDC_LEEWAY = "0" }).validate_token(late, h.req()) })
  end)

  it("reads roles from a dotted claim path, as an array or a string", function()
    local keycloak = load({ OIDC_ROLES_CLAIM = "realm_access.roles" })
    local t = token({ roles = false, realm_access = { roles = { "offline_access", "editor" } } })
    assert.are.equal("offline_access,editor", select(2, keycloak.validate_token(t, h.req())))
    -- the path missing, or leading through a non-table: no roles, still a user
    assert.are.same("", select(2, keycloak.validate_token(token({ realm_access = "x" }), h.req())))
    local scoped = load({ OIDC_ROLES_CLAIM = "scope" })
    assert.are.equal("read,write", select(2, scoped.validate_token(token({ scope = "read write" }), h.req())))
  end)

  it("keeps only roles that are safe in channel names", function()
    local hooks = load()
    local t = token({ roles = { "admin", "a,b", "user:7", "", 5, "ok.role-1", "admin", { "x" } } })
    assert.are.equal("admin,ok.role-1", select(2, hooks.validate_token(t, h.req())))
    local many = {}
    for i = 1, 300 do many[i] = "r" .. i end
    local _, role = hooks.validate_token(token({ roles = many }), h.req())
    assert.are.equal(250, select(2, role:gsub(",", "")) + 1)
  end)

  it("takes the user from OIDC_USER_CLAIM, numbers included", function()
    local hooks = load({ OIDC_USER_CLAIM = "email" })
    assert.are.equal("ada@example.test", (hooks.validate_token(token({ email = "ada@example.test" }), h.req())))
    local user, why = hooks.validate_token(token(), h.req())
    assert.is_nil(user)
    assert.matches("no usable email claim", why, 1, true)
    assert.are.equal("42", (load().validate_token(token({ sub = 42 }), h.req())))
  end)

  it("never puts the token in what it returns", function()
    local t = token({ iss = "https://evil.example.test/" })
    local _, why = load().validate_token(t, h.req())
    assert.is_nil(why:find(t, 1, true))
  end)
end)
