-- tinysse.jwks with a URL, end to end: the gateway fetches the test
-- backend's JWKS once, verifies RS256/ES256/EdDSA tokens against it, picks
-- up a new kid without a restart, drops a removed key at the next refresh,
-- keeps the last good set when the endpoint is down or sends garbage, and
-- answers jwks_unavailable only until a slow first fetch completes.
local T = require "support"
local socket = require "socket"
local cjson = require "cjson"
local J = dofile(T.root .. "/spec/jose_support.lua")

describe("tinysse.jwks with a URL", function()
  local dir, backend, g, file
  local function token(name, alg, kid, claims)
    local c = { sub = claims and claims.sub or ("user-" .. kid), iss = "https://idp.example",
                aud = "tinysse", exp = os.time() + 600 }
    for k, v in pairs(claims or {}) do c[k] = v end
    return J.sign(c, dir .. "/" .. name .. ".pem", alg, kid)
  end
  local function publish_keys(list)
    local keys = {}
    for _, k in ipairs(list) do keys[#keys + 1] = J.jwk(dir, k[1], k[2]) end
    J.write(file .. ".tmp", cjson.encode({ keys = keys }))
    os.rename(file .. ".tmp", file)
  end
  local function status(tok)
    local s = g:stream("/events?token=" .. tok)
    if s.status == 200 then s:close() end
    return s.status, s.json and s.json.message
  end
  local function fetches(result)
    return g:metric('tinysse_jwks_fetches_total{result="' .. result .. '"}') or 0
  end

  setup(function()
    dir = T.tmpdir()
    J.keys(dir, { rsa1 = "rsa", p256 = "p256", ed = "ed", rsa2 = "rsa" })
    file = dir .. "/jwks.json"
    publish_keys({ { "rsa1", "k1" } })
    backend = T.start_backend(dir, file)
    g = T.start({ script = T.root .. "/spec/e2e/scripts/jwks.lua", workers = 2,
                  env = { JWKS_URL = backend.url .. "/jwks" } })
    T.wait_until("the first fetch", function() return g:logtext():find("event=jwks_fetched", 1, true) end, 5)
  end)
  teardown(function()
    if g then g:stop() end
    if backend then backend.stop() end
  end)

  it("fetches once per gateway and verifies tokens against the set", function()
    assert.are.equal(200, status(token("rsa1", "RS256", "k1")))
    -- two workers, each with its own Lua state, but one fetch per refresh
    -- (2 s) for the gateway: never two fetches close together (waited for:
    -- under valgrind the first refresh can come late)
    local times
    T.wait_until("a refresh fetch", function()
      times = {}
      for s in g:logtext():gmatch("ts=%S+T%d+:(%d+:[%d.]+)Z level=info event=jwks_fetched") do
        local m, sec = s:match("(%d+):([%d.]+)")
        times[#times + 1] = tonumber(m) * 60 + tonumber(sec)
      end
      return #times >= 2
    end, T.valgrind and 15 or 5)
    for i = 2, #times do
      local gap = (times[i] - times[i - 1]) % 3600
      assert.is_true(gap >= 0.9, ("two fetches %.3f s apart"):format(gap))
    end
    local seen = backend.stats().by_path["/jwks"] -- one may be in flight
    assert.is_true(seen == #times or seen == #times + 1, ("backend saw %d, log has %d"):format(seen, #times))
    assert.are.equal(1, g:metric('tinysse_jwks_keys{url="' .. backend.url .. '/jwks"}'))
    -- wrong key for the kid, wrong issuer, wrong audience, HS256 with no such key
    local forged = token("rsa2", "RS256", "k1")
    assert.are.same({ 401, "bad_signature" }, { status(forged) })
    assert.are.same({ 401, "bad_issuer" }, { status(token("rsa1", "RS256", "k1", { iss = "https://evil" })) })
    assert.are.same({ 401, "bad_audience" }, { status(token("rsa1", "RS256", "k1", { aud = "other" })) })
    local hs = J.sign({ sub = "x", iss = "https://idp.example", aud = "tinysse" }, "secret", "HS256")
    local st, why = status(hs)
    assert.are.equal(401, st)
    assert.truthy(why == "alg_not_allowed" or why == "unsupported_alg", why)
  end)

  it("picks up a new kid without a restart", function()
    publish_keys({ { "rsa1", "k1" }, { "p256", "k2" }, { "ed", "k3" } })
    local es = token("p256", "ES256", "k2")
    T.wait_until("the new kid to be accepted", function() return status(es) == 200 end, 5)
    T.wait_until("the EdDSA key too", function() return status(token("ed", "EdDSA", "k3")) == 200 end, 5)
    assert.are.equal(200, status(token("rsa1", "RS256", "k1")))
  end)

  it("refuses a removed key's tokens after the next refresh, and only those", function()
    publish_keys({ { "p256", "k2" }, { "ed", "k3" } })
    local old = token("rsa1", "RS256", "k1")
    T.wait_until("k1 to be refused", function() return status(old) == 401 end, 8)
    assert.are.same({ 401, "unknown_kid" }, { status(old) })
    assert.are.equal(200, status(token("p256", "ES256", "k2")))
  end)

  it("keeps the last good set when the endpoint is down or sends garbage", function()
    local errors = fetches("error")
    os.remove(file) -- the backend answers 503
    T.wait_until("a failed fetch", function() return fetches("error") > errors end, 8)
    assert.are.equal(200, status(token("p256", "ES256", "k2")))
    J.write(file, "{ this is not json")
    errors = fetches("error")
    T.wait_until("a garbage fetch", function() return fetches("error") > errors end, 8)
    assert.are.equal(200, status(token("ed", "EdDSA", "k3")))
    assert.truthy(g:logtext():find("event=jwks_fetch_failed", 1, true))
    assert.truthy(g:logtext():find("kept=last_good", 1, true))
    publish_keys({ { "p256", "k2" } })
  end)

  it("answers jwks_unavailable until a slow first fetch completes", function()
    local g2 = T.start({ script = T.root .. "/spec/e2e/scripts/jwks.lua",
                         env = { JWKS_URL = backend.url .. "/jwks?delay_ms=1500" } })
    finally(function() g2:stop() end)
    local es = token("p256", "ES256", "k2")
    local s = g2:stream("/events?token=" .. es)
    assert.are.equal(401, s.status)
    assert.are.equal("jwks_unavailable", s.json.message)
    T.wait_until("the slow fetch", function() return g2:logtext():find("event=jwks_fetched", 1, true) end, 6)
    s = g2:stream("/events?token=" .. es)
    assert.are.equal(200, s.status)
    s:close()
  end)
end)
