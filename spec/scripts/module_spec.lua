-- The tinysse Lua module, standalone build (no gateway host).
local h = dofile((os.getenv("TINYSSE_ROOT") or ".") .. "/spec/scripts/helper.lua")
local tinysse, cjson = h.tinysse, h.cjson

local function unhex(s)
  return (s:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

describe("tinysse.hmac_sha256 (RFC 4231)", function()
  local cases = {
    { string.rep("\x0b", 20), "Hi There",
      "b0344c61d8db38535ca8afceaf0bf12b881dc200c9833da726e9376c2e32cff7" },
    { "Jefe", "what do ya want for nothing?",
      "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843" },
    { string.rep("\xaa", 20), string.rep("\xdd", 50),
      "773ea91e36800e46854db8ebd09181a72959098b3ef8c122d9635514ced565fe" },
    { unhex("0102030405060708090a0b0c0d0e0f10111213141516171819"), string.rep("\xcd", 50),
      "82558a389a443c0ea4cc819899f2083a85f0faa3e578f8077a2e3ff46729665b" },
    { string.rep("\xaa", 131), "Test Using Larger Than Block-Size Key - Hash Key First",
      "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54" },
    { string.rep("\xaa", 131), "This is a test using a larger than block-size key and a larger "
        .. "than block-size data. The key needs to be hashed before being used by the HMAC algorithm.",
      "9b09ffa71b942fcb27635fbcd5b0e944bfdc63644f0713938a7f51535c3a35e2" },
  }
  for i, c in ipairs(cases) do
    it("matches test case " .. (i < 5 and i or i + 1), function()
      local mac = tinysse.hmac_sha256(c[1], c[2])
      assert.are.equal(32, #mac)
      assert.are.equal(c[3], tinysse.hex(mac))
    end)
  end

  it("matches the truncated test case 5", function()
    local mac = tinysse.hmac_sha256(string.rep("\x0c", 20), "Test With Truncation")
    assert.are.equal("a3b6167473100ee06e0c796c2955552b", tinysse.hex(mac):sub(1, 32))
  end)

  it("depends on key and message", function()
    assert.are_not.equal(tinysse.hmac_sha256("k", "m"), tinysse.hmac_sha256("k", "n"))
    assert.are_not.equal(tinysse.hmac_sha256("k", "m"), tinysse.hmac_sha256("j", "m"))
  end)

  it("rejects non-string arguments", function()
    assert.has_error(function() tinysse.hmac_sha256(nil, "m") end)
    assert.has_error(function() tinysse.hmac_sha256("k", {}) end)
  end)
end)

describe("tinysse.hex", function()
  it("writes lowercase hex, two digits a byte", function()
    assert.are.equal("", tinysse.hex(""))
    assert.are.equal("00ff10ab", tinysse.hex("\0\255\16\171"))
  end)
end)

describe("tinysse.base64url", function()
  it("encodes the RFC 4648 vectors without padding", function()
    local v = { [""] = "", f = "Zg", fo = "Zm8", foo = "Zm9v", foob = "Zm9vYg",
                fooba = "Zm9vYmE", foobar = "Zm9vYmFy" }
    for plain, enc in pairs(v) do
      assert.are.equal(enc, tinysse.base64url_encode(plain))
      assert.are.equal(plain, tinysse.base64url_decode(enc))
    end
  end)

  it("uses - and _ instead of + and /", function()
    assert.are.equal("-___", tinysse.base64url_encode("\xfb\xff\xff"))
    assert.are.equal("\xfb\xff\xff", tinysse.base64url_decode("-___"))
  end)

  it("round-trips every length and byte value", function()
    for n = 0, 80 do
      local s = n == 0 and "" or tinysse.random_bytes(n)
      local enc = tinysse.base64url_encode(s)
      assert.is_nil(enc:find("[^%w%-_]"))
      assert.are.equal(s, tinysse.base64url_decode(enc))
    end
    local all = {}
    for i = 0, 255 do all[#all + 1] = string.char(i) end
    all = table.concat(all)
    assert.are.equal(all, tinysse.base64url_decode(tinysse.base64url_encode(all)))
  end)

  it("accepts correct padding", function()
    assert.are.equal("f", tinysse.base64url_decode("Zg=="))
    assert.are.equal("fo", tinysse.base64url_decode("Zm8="))
  end)

  it("rejects bad characters", function()
    for _, bad in ipairs({ "Zm9v+", "Zm9v/A", "Zm 9v", "Zm9v\n", "Z=g", "Zm9v\0" }) do
      local s, why = tinysse.base64url_decode(bad)
      assert.is_nil(s)
      assert.are.equal("invalid character", why)
    end
  end)

  it("rejects impossible lengths and wrong padding", function()
    for _, bad in ipairs({ "Z", "Zm9vY", "Zg=", "Zm8==", "Zg===" }) do
      local s, why = tinysse.base64url_decode(bad)
      assert.is_nil(s)
      assert.is_string(why)
    end
    assert.are.equal("invalid length", select(2, tinysse.base64url_decode("Z")))
  end)

  it("rejects non-zero leftover bits (one encoding per value)", function()
    local s, why = tinysse.base64url_decode("Zh")
    assert.is_nil(s)
    assert.are.equal("non-zero trailing bits", why)
    assert.is_nil(tinysse.base64url_decode("Zm9"))
  end)
end)

describe("tinysse.jwt_verify", function()
  local secret = "s3cret-for-tests"
  local now = tinysse.time()

  local function payload(t) return cjson.encode(t) end

  it("accepts the well-known jwt.io HS256 example", function()
    local token = "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9."
      .. "eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIiwiaWF0IjoxNTE2MjM5MDIyfQ."
      .. "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c"
    local claims = assert(tinysse.jwt_verify(token, "your-256-bit-secret"))
    assert.are.equal("1234567890", claims.sub)
    assert.are.equal("John Doe", claims.name)
    assert.are.same({ nil, "bad_signature" }, { tinysse.jwt_verify(token, "other") })
  end)

  it("returns the claims of a valid token", function()
    local token = h.raw_token(h.HS256, payload({ sub = "42", exp = now + 60, nbf = now - 5 }), secret)
    local claims, why = tinysse.jwt_verify(token, secret)
    assert.is_nil(why)
    assert.are.equal("42", claims.sub)
    assert.are.equal(now + 60, claims.exp)
  end)

  it("rejects a wrong secret and tampered parts", function()
    local token = h.raw_token(h.HS256, payload({ sub = "42" }), secret)
    local head, body, sig = token:match("^([^.]+)%.([^.]+)%.([^.]+)$")
    local forged = tinysse.base64url_encode(payload({ sub = "1" }))
    local cases = {
      { token, "wrong-secret" },
      { head .. "." .. forged .. "." .. sig, secret },
      { head .. "." .. body .. "." .. sig:sub(1, -4), secret },          -- 30 bytes
      { head .. "." .. body .. "." .. sig .. "AAAA", secret },           -- 35 bytes
      { head .. "." .. body .. ".", secret },
      { head .. "." .. body .. "." .. tinysse.base64url_encode(string.rep("\0", 32)), secret },
    }
    for _, c in ipairs(cases) do
      assert.are.same({ nil, "bad_signature" }, { tinysse.jwt_verify(c[1], c[2]) })
    end
  end)

  it("rejects alg none and every alg but HS256", function()
    local p = payload({ sub = "42" })
    assert.are.same({ nil, "unsupported_alg" },
      { tinysse.jwt_verify(h.raw_token('{"alg":"none","typ":"JWT"}', p), secret) })
    -- Even when "signed": the header alone decides.
    for _, alg in ipairs({ '"none"', '"NONE"', '"HS512"', '"RS256"', '"hs256"', '""', "null", "256" }) do
      local token = h.raw_token('{"alg":' .. alg .. '}', p, secret)
      assert.are.same({ nil, "unsupported_alg" }, { tinysse.jwt_verify(token, secret) })
    end
    assert.are.same({ nil, "unsupported_alg" },
      { tinysse.jwt_verify(h.raw_token('{"typ":"JWT"}', p, secret), secret) })
  end)

  it("rejects expired tokens, with leeway", function()
    local token = h.raw_token(h.HS256, payload({ sub = "42", exp = now - 10 }), secret)
    assert.are.same({ nil, "expired" }, { tinysse.jwt_verify(token, secret) })
    assert.are.same({ nil, "expired" }, { tinysse.jwt_verify(token, secret, { leeway = 5 }) })
    assert.is_table(tinysse.jwt_verify(token, secret, { leeway = 30 }))
  end)

  it("rejects tokens not yet valid, with leeway", function()
    local token = h.raw_token(h.HS256, payload({ sub = "42", nbf = now + 60 }), secret)
    assert.are.same({ nil, "not_yet_valid" }, { tinysse.jwt_verify(token, secret) })
    assert.are.same({ nil, "not_yet_valid" }, { tinysse.jwt_verify(token, secret, { leeway = 30 }) })
    assert.is_table(tinysse.jwt_verify(token, secret, { leeway = 120 }))
  end)

  it("rejects malformed tokens", function()
    local p = payload({ sub = "42" })
    local good = h.raw_token(h.HS256, p, secret)
    local cases = {
      "", "abc", "a.b", good .. ".x", "..", "$$$." .. good:match("%.(.*)$"),
      h.raw_token("not json", p, secret),
      h.raw_token('["HS256"]', p, secret),
      h.raw_token(h.HS256, "not json", secret),
      h.raw_token(h.HS256, '["an","array"]', secret),
      h.raw_token(h.HS256, '"a string"', secret),
      h.raw_token(h.HS256, '{"exp":"tomorrow"}', secret),
      h.raw_token(h.HS256, '{"nbf":true}', secret),
    }
    for _, token in ipairs(cases) do
      assert.are.same({ nil, "malformed" }, { tinysse.jwt_verify(token, secret) })
    end
    local sig = good:match("[^.]+$")
    assert.are.same({ nil, "malformed" }, { tinysse.jwt_verify(good:sub(1, -#sig - 1) .. "!" .. sig, secret) })
    assert.are.same({ nil, "malformed" }, { tinysse.jwt_verify(nil, secret) })
    assert.are.same({ nil, "malformed" }, { tinysse.jwt_verify(42, secret) })
  end)

  it("raises on a bad secret or leeway", function()
    local good = h.raw_token(h.HS256, payload({}), secret)
    assert.has_error(function() tinysse.jwt_verify(good) end)
    assert.matches("leeway", h.error_of(tinysse.jwt_verify, good, secret, { leeway = -1 }))
    assert.matches("leeway", h.error_of(tinysse.jwt_verify, good, secret, { leeway = "soon" }))
  end)
end)

describe("tinysse.jwt_sign", function()
  it("round-trips through jwt_verify", function()
    local claims = { sub = "42", role = "admin", roles = { "a", "b" }, n = 7, exp = tinysse.time() + 60 }
    local token = tinysse.jwt_sign(claims, "k")
    assert.matches("^[%w_%-]+%.[%w_%-]+%.[%w_%-]+$", token)
    assert.are.same(claims, tinysse.jwt_verify(token, "k"))
    assert.are.same({ nil, "bad_signature" }, { tinysse.jwt_verify(token, "K") })
  end)

  it("writes the HS256 header", function()
    local head = tinysse.jwt_sign({}, "k"):match("^[^.]+")
    assert.are.same({ alg = "HS256", typ = "JWT" }, cjson.decode(tinysse.base64url_decode(head)))
  end)

  it("refuses claims that are not an object", function()
    assert.has_error(function() tinysse.jwt_sign("x", "k") end)
    assert.matches("string keys", h.error_of(tinysse.jwt_sign, { 1, 2 }, "k"))
    assert.has_error(function() tinysse.jwt_sign({ f = print }, "k") end)
    assert.has_error(function() tinysse.jwt_sign({}, nil) end)
  end)
end)

describe("tinysse clock, randomness and comparison", function()
  it("tells the time", function()
    local t, n = tinysse.time(), tinysse.now()
    assert.are.equal("integer", math.type(t))
    assert.are.equal("float", math.type(n))
    assert.is_true(math.abs(t - os.time()) <= 1)
    assert.is_true(math.abs(n - t) <= 1)
    assert.are.equal(n, math.floor(n * 1000 + 0.5) / 1000) -- millisecond steps
  end)

  it("makes random bytes, 1..1024", function()
    assert.are.equal(1, #tinysse.random_bytes(1))
    assert.are.equal(1024, #tinysse.random_bytes(1024))
    assert.are_not.equal(tinysse.random_bytes(16), tinysse.random_bytes(16))
    for _, n in ipairs({ 0, -1, 1025 }) do
      assert.matches("1..1024", h.error_of(tinysse.random_bytes, n), 1, true)
    end
    assert.has_error(function() tinysse.random_bytes("many") end)
  end)

  it("compares strings", function()
    assert.is_true(tinysse.constant_time_eq("", ""))
    assert.is_true(tinysse.constant_time_eq("abc", "abc"))
    assert.is_false(tinysse.constant_time_eq("abc", "abd"))
    assert.is_false(tinysse.constant_time_eq("abc", "abcd"))
    assert.is_false(tinysse.constant_time_eq("a\0b", "a\0c"))
    assert.has_error(function() tinysse.constant_time_eq("a", nil) end)
  end)

  it("keeps one 32-byte secret per load", function()
    assert.are.equal(32, #tinysse.secret())
    assert.are.equal(tinysse.secret(), tinysse.secret())
    assert.are_not.equal(string.rep("\0", 32), tinysse.secret())
  end)
end)

describe("tinysse.log", function()
  it("accepts the four levels and refuses others", function()
    for _, level in ipairs({ "debug", "info", "warn", "error" }) do
      assert.has_no.errors(function() tinysse.log(level, "module_spec: log level " .. level) end)
    end
    assert.matches("invalid option", h.error_of(tinysse.log, "loud", "x"))
    assert.has_error(function() tinysse.log("info") end)
  end)
end)

describe("tinysse.publish and tinysse.count outside the gateway", function()
  it("raise a clear error", function()
    assert.are.equal("tinysse.publish is only available inside the gateway",
      h.error_of(tinysse.publish, "all", { hello = 1 }))
    assert.are.equal("tinysse.publish is only available inside the gateway",
      h.error_of(tinysse.publish, { "role:admin", "user:42" }, "x", 3, "update"))
    assert.are.equal("tinysse.count is only available inside the gateway",
      h.error_of(tinysse.count, "all"))
  end)

  it("check the types of their arguments first (the values are the gateway's to check)", function()
    assert.matches("targets", h.error_of(tinysse.publish, {}, 1))
    assert.matches("targets", h.error_of(tinysse.publish, nil, 1))
    assert.matches("target", h.error_of(tinysse.publish, { "all", 7 }, 1))
    -- values go to the gateway, which checks them by the POST /publish
    -- rules (spec/e2e/publish_rules_spec.lua)
    local inside = "tinysse.publish is only available inside the gateway"
    assert.are.equal(inside, h.error_of(tinysse.publish, "", 1))
    assert.are.equal(inside, h.error_of(tinysse.publish, "all", 1, 256))
    assert.are.equal(inside, h.error_of(tinysse.publish, "all", 1, 0, "a\nb"))
    assert.has_error(function() tinysse.publish("all", print) end)
    assert.has_error(function() tinysse.count(nil) end)
  end)
end)
