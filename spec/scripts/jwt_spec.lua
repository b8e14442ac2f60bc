-- tinysse.jwt_verify / jwt_sign / jwks with asymmetric keys, standalone
-- module. Keys come from the openssl CLI into a temp dir, so an independent
-- implementation signs and checks some of the tokens too.
local h = dofile((os.getenv("TINYSSE_ROOT") or ".") .. "/spec/scripts/helper.lua")
local tinysse, cjson = h.tinysse, h.cjson

local J = dofile((os.getenv("TINYSSE_ROOT") or ".") .. "/spec/jose_support.lua")
local dir
local sh, read, write, output = J.sh, J.read, J.write, J.output
local function key(name) return read(dir .. "/" .. name) end
local b64 = tinysse.base64url_encode

-- The public JWK of a key pair made below, with kid.
local function jwk(name, kid, extra) return J.jwk(dir, name, kid, extra) end

local KEYS = {
  rsa = "rsa", rsa2 = "rsa", rsa1024 = "rsa1024", p256 = "p256", p256b = "p256", p384 = "p384",
  ed = "ed", ed2 = "ed",
}

setup(function()
  dir = output("mktemp -d"):match("%S+")
  J.keys(dir, KEYS)
end)

teardown(function()
  if dir then os.execute("rm -rf " .. dir) end
end)

local CASES = {
  { "RS256", "rsa", "rsa2" }, { "RS384", "rsa", "rsa2" }, { "RS512", "rsa", "rsa2" },
  { "PS256", "rsa", "rsa2" }, { "ES256", "p256", "p256b" }, { "ES384", "p384", "p256" },
  { "EdDSA", "ed", "ed2" },
}

describe("tinysse.jwt_verify with public keys", function()
  it("accepts each algorithm with its key and refuses others", function()
    for _, c in ipairs(CASES) do
      local alg, right, wrong = c[1], c[2], c[3]
      local token = tinysse.jwt_sign({ sub = "42", exp = tinysse.time() + 60 }, key(right .. ".pem"), { alg = alg })
      assert.are.equal(alg, cjson.decode(tinysse.base64url_decode(token:match("^[^.]+"))).alg)
      local claims, why = tinysse.jwt_verify(token, key(right .. ".pub"))
      assert.is_nil(why, alg)
      assert.are.equal("42", claims.sub)
      local expect = alg == "ES384" and "alg_not_allowed" or "bad_signature" -- p256 for ES384
      assert.are.same({ nil, expect }, { tinysse.jwt_verify(token, key(wrong .. ".pub")) }, alg)
      -- a bare secret answers as it did when it was HS256-only
      assert.are.same({ nil, "unsupported_alg" }, { tinysse.jwt_verify(token, "a shared secret") }, alg)
      assert.are.same({ nil, "alg_not_allowed" },
        { tinysse.jwt_verify(token, tinysse.jwks(cjson.encode({ kty = "oct", k = b64("s") }))) }, alg)
      -- a flipped signature byte
      local head, sig = token:match("^(.*%.)([^.]+)$")
      local raw = tinysse.base64url_decode(sig)
      local bad = head .. b64(raw:sub(1, 5) .. string.char((raw:byte(6) + 1) % 256) .. raw:sub(7))
      assert.are.same({ nil, "bad_signature" }, { tinysse.jwt_verify(bad, key(right .. ".pub")) }, alg)
    end
  end)

  it("agrees with the openssl CLI both ways", function()
    local input = b64('{"alg":"RS256","typ":"JWT"}') .. "." .. b64('{"sub":"cli"}')
    write(dir .. "/input", input)
    sh("openssl dgst -sha256 -sign " .. dir .. "/rsa.pem -out " .. dir .. "/sig " .. dir .. "/input")
    local claims = assert(tinysse.jwt_verify(input .. "." .. b64(read(dir .. "/sig")), key("rsa.pub")))
    assert.are.equal("cli", claims.sub)

    input = b64('{"alg":"EdDSA"}') .. "." .. b64('{"sub":"ed"}')
    write(dir .. "/input", input)
    sh("openssl pkeyutl -sign -rawin -inkey " .. dir .. "/ed.pem -in " .. dir .. "/input -out " .. dir .. "/sig")
    assert.are.equal("ed", tinysse.jwt_verify(input .. "." .. b64(read(dir .. "/sig")), key("ed.pub")).sub)

    for _, alg in ipairs({ "RS256", "PS256" }) do
      local token = tinysse.jwt_sign({ sub = "us" }, key("rsa.pem"), { alg = alg })
      local signed, sig = token:match("^(.*)%.([^.]+)$")
      write(dir .. "/input", signed)
      write(dir .. "/sig", tinysse.base64url_decode(sig))
      local pss = alg == "PS256" and " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:digest" or ""
      sh("openssl dgst -sha256 -verify " .. dir .. "/rsa.pub" .. pss .. " -signature " .. dir .. "/sig "
         .. dir .. "/input | grep -q 'Verified OK'")
    end
  end)

  it("never takes a public key's PEM text as an HMAC secret (alg swap)", function()
    local pem = key("rsa.pub")
    local token = h.raw_token(h.HS256, '{"sub":"attacker"}', pem)
    assert.are.same({ nil, "alg_not_allowed" }, { tinysse.jwt_verify(token, pem) })
    assert.are.same({ nil, "alg_not_allowed" }, { tinysse.jwt_verify(token, pem, { algs = { "HS256" } }) })
    local set = tinysse.jwks(cjson.encode({ keys = { jwk("rsa", "r1") } }))
    assert.are.same({ nil, "alg_not_allowed" }, { tinysse.jwt_verify(token, set) })
  end)

  it("refuses alg none and unknown algs", function()
    for _, alg in ipairs({ "none", "None", "ES512", "PS384", "rs256" }) do
      local token = h.raw_token('{"alg":"' .. alg .. '"}', '{"sub":"1"}') .. "AAAA"
      assert.are.same({ nil, "unsupported_alg" }, { tinysse.jwt_verify(token, key("rsa.pub")) }, alg)
    end
  end)

  it("checks exp, nbf, iss, aud and required claims", function()
    local pem, pub, now = key("p256.pem"), key("p256.pub"), tinysse.time()
    local function t(claims) return tinysse.jwt_sign(claims, pem) end
    assert.are.same({ nil, "expired" }, { tinysse.jwt_verify(t({ exp = now - 10 }), pub) })
    assert.is_table(tinysse.jwt_verify(t({ exp = now - 10 }), pub, { leeway = 30 }))
    assert.are.same({ nil, "not_yet_valid" }, { tinysse.jwt_verify(t({ nbf = now + 60 }), pub) })
    assert.are.same({ nil, "malformed" }, { tinysse.jwt_verify(t({ exp = "soon" }), pub) })
    local opts = { iss = "https://idp.example", aud = "tinysse", required = { "sub", "tenant" } }
    local good = { iss = "https://idp.example", aud = { "other", "tinysse" }, sub = "1", tenant = "acme" }
    assert.are.equal("acme", tinysse.jwt_verify(t(good), pub, opts).tenant)
    local function without(k, v)
      local c = {}
      for key_, val in pairs(good) do c[key_] = val end
      c[k] = v
      return t(c)
    end
    assert.are.same({ nil, "bad_issuer" }, { tinysse.jwt_verify(without("iss", "https://evil"), pub, opts) })
    assert.are.same({ nil, "bad_issuer" }, { tinysse.jwt_verify(without("iss", nil), pub, opts) })
    assert.are.same({ nil, "bad_audience" }, { tinysse.jwt_verify(without("aud", { "other" }), pub, opts) })
    assert.are.same({ nil, "bad_audience" }, { tinysse.jwt_verify(without("aud", "tinysse2"), pub, opts) })
    assert.is_table(tinysse.jwt_verify(without("aud", "tinysse"), pub, opts))
    assert.are.same({ nil, "missing_claim" }, { tinysse.jwt_verify(without("tenant", nil), pub, opts) })
    local es = t({ sub = "1" })
    assert.are.same({ nil, "alg_not_allowed" }, { tinysse.jwt_verify(es, pub, { algs = { "RS256", "EdDSA" } }) })
    assert.is_table(tinysse.jwt_verify(es, pub, { algs = { "ES256" } }))
  end)

  it("raises on bad options and bad keys, naming them", function()
    local token, pub = tinysse.jwt_sign({}, "k"), key("rsa.pub")
    assert.matches("algs", h.error_of(tinysse.jwt_verify, token, pub, { algs = "RS256" }))
    assert.matches("algs", h.error_of(tinysse.jwt_verify, token, pub, { algs = { "none" } }))
    assert.matches("algs", h.error_of(tinysse.jwt_verify, token, pub, { algs = {} }))
    assert.matches("iss", h.error_of(tinysse.jwt_verify, token, pub, { iss = 7 }))
    assert.matches("aud", h.error_of(tinysse.jwt_verify, token, pub, { aud = { "a" } }))
    assert.matches("required", h.error_of(tinysse.jwt_verify, token, pub, { required = "sub" }))
    assert.matches("required", h.error_of(tinysse.jwt_verify, token, pub, { required = { 1 } }))
    assert.matches("leeway", h.error_of(tinysse.jwt_verify, token, pub, { leeway = -1 }))
    assert.matches("2048", h.error_of(tinysse.jwt_verify, token, key("rsa1024.pub")))
    assert.matches("private", h.error_of(tinysse.jwt_verify, token, key("rsa.pem")))
    assert.matches("key set", h.error_of(tinysse.jwt_verify, token, {}))
    assert.matches("fit", h.error_of(tinysse.jwt_sign, {}, key("rsa.pem"), { alg = "ES256" }))
    assert.matches("unknown alg", h.error_of(tinysse.jwt_sign, {}, "k", { alg = "none" }))
    assert.matches("2048", h.error_of(tinysse.jwt_sign, {}, key("rsa1024.pem")))
  end)

  it("keeps a bare secret HS256 unless algs says otherwise", function()
    local token = tinysse.jwt_sign({ sub = "1" }, "k", { alg = "HS512", kid = "v2" })
    assert.are.same({ alg = "HS512", typ = "JWT", kid = "v2" },
      cjson.decode(tinysse.base64url_decode(token:match("^[^.]+"))))
    assert.are.same({ nil, "unsupported_alg" }, { tinysse.jwt_verify(token, "k") })
    assert.are.equal("1", tinysse.jwt_verify(token, "k", { algs = { "HS512" } }).sub)
    assert.are.same({ nil, "bad_signature" }, { tinysse.jwt_verify(token, "K", { algs = { "HS512" } }) })
  end)
end)

describe("tinysse.jwks", function()
  local function jwks_doc()
    return cjson.encode({ keys = {
      jwk("rsa", "rsa-1"), jwk("rsa2", "rsa-2", { alg = "RS256", use = "sig" }), jwk("p256", "ec-1"),
      jwk("p384", "ec-2"), jwk("ed", "ed-1"),
      { kty = "oct", kid = "hs-1", k = b64("shared") },
      { kty = "RSA", kid = "enc-1", use = "enc", n = "AQAB", e = "AQAB" },
      { kty = "EC", kid = "p521", crv = "P-521", x = "AA", y = "AA" },
    } })
  end

  it("reads a JWKS from a JSON string and picks keys by kid", function()
    local set = tinysse.jwks(jwks_doc())
    local info = tinysse.jwks_info(set)
    assert.are.equal(6, info.count)
    assert.are.same({ "rsa-1", "rsa-2", "ec-1", "ec-2", "ed-1", "hs-1" }, info.kids) -- document order
    assert.are.same(info, set:info())
    assert.matches("6 keys", tostring(set))

    local function signed(pem, alg, kid) return tinysse.jwt_sign({ sub = kid or "none" }, key(pem), { alg = alg, kid = kid }) end
    assert.are.equal("rsa-1", tinysse.jwt_verify(signed("rsa.pem", "RS256", "rsa-1"), set).sub)
    assert.are.equal("rsa-2", tinysse.jwt_verify(signed("rsa2.pem", "RS256", "rsa-2"), set).sub)
    assert.are.equal("ec-2", tinysse.jwt_verify(signed("p384.pem", "ES384", "ec-2"), set).sub)
    assert.are.equal("ed-1", tinysse.jwt_verify(signed("ed.pem", "EdDSA", "ed-1"), set).sub)
    assert.are.equal("none", tinysse.jwt_verify(signed("p256.pem", "ES256"), set).sub) -- no kid: tried
    assert.are.equal("hs-1", tinysse.jwt_verify(tinysse.jwt_sign({ sub = "hs-1" }, "shared", { kid = "hs-1" }), set).sub)
    -- the kid decides: a token naming rsa-1 signed by rsa2 fails
    assert.are.same({ nil, "bad_signature" }, { tinysse.jwt_verify(signed("rsa2.pem", "RS256", "rsa-1"), set) })
    assert.are.same({ nil, "unknown_kid" }, { tinysse.jwt_verify(signed("rsa.pem", "RS256", "rsa-9"), set) })
    -- rsa-2's JWK says RS256 only
    assert.are.same({ nil, "alg_not_allowed" }, { tinysse.jwt_verify(signed("rsa2.pem", "PS256", "rsa-2"), set) })
    assert.are.same({ nil, "alg_not_allowed" }, { tinysse.jwt_verify(signed("ed.pem", "EdDSA", "rsa-1"), set) })
  end)

  it("reads a JWKS or a PEM key from a file", function()
    write(dir .. "/jwks.json", jwks_doc())
    local set = tinysse.jwks(dir .. "/jwks.json")
    assert.are.equal(6, tinysse.jwks_info(set).count)
    assert.is_table(tinysse.jwt_verify(tinysse.jwt_sign({}, key("ed.pem"), { kid = "ed-1" }), set))
    local pem_set = tinysse.jwks(dir .. "/p256.pub")
    assert.are.same({ count = 1, kids = {} }, tinysse.jwks_info(pem_set))
    assert.is_table(tinysse.jwt_verify(tinysse.jwt_sign({}, key("p256.pem")), pem_set))
    assert.is_table(tinysse.jwt_verify(tinysse.jwt_sign({}, key("p256.pem")), tinysse.jwks(key("p256.pub"))))
  end)

  it("raises on sources it cannot use", function()
    assert.matches("URLs are fetched only inside the gateway", h.error_of(tinysse.jwks, "https://idp.example/jwks.json"))
    assert.matches("URLs are fetched only inside the gateway", h.error_of(tinysse.jwks, "http://127.0.0.1/jwks"))
    assert.matches("no such file", h.error_of(tinysse.jwks, dir .. "/missing.json"):lower())
    assert.matches("JSON", h.error_of(tinysse.jwks, "{not json"))
    assert.matches("no usable key", h.error_of(tinysse.jwks, '{"keys":[{"kty":"RSA","use":"enc"}]}'))
    assert.matches("2048", h.error_of(tinysse.jwks, cjson.encode({ keys = { jwk("rsa1024", "small") } })))
    assert.matches("refresh", h.error_of(tinysse.jwks, "{}", { refresh = 0 }))
    assert.has_error(function() tinysse.jwks_info("x") end)
  end)
end)
