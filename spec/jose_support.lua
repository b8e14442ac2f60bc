-- Key pairs for the JWT specs, made by the openssl CLI (an implementation
-- independent of ours), their public JWKs, and tokens signed by the CLI.
-- keys(dir, {name = genpkey options}) writes <name>.pem and <name>.pub into
-- dir; jwk(dir, name, kid [, extra]) is the public JWK of one; sign(claims,
-- key, alg [, kid]) a compact JWS. Plain Lua and the CLI only, so specs can
-- use it where the tinysse module cannot be loaded (sanitizer builds).
local cjson = require "cjson"
local T = require "support"

local M = {}

M.KINDS = {
  rsa = "-algorithm RSA -pkeyopt rsa_keygen_bits:2048",
  rsa1024 = "-algorithm RSA -pkeyopt rsa_keygen_bits:1024",
  p256 = "-algorithm EC -pkeyopt ec_paramgen_curve:P-256",
  p384 = "-algorithm EC -pkeyopt ec_paramgen_curve:P-384",
  ed = "-algorithm ED25519",
}

local function output(cmd)
  local p = assert(io.popen(cmd .. " 2>/dev/null"))
  local s = p:read("a")
  p:close()
  return s
end
M.output = output

function M.sh(cmd)
  local ok = os.execute(cmd .. " 2>/dev/null")
  assert(ok, "failed: " .. cmd)
end

M.read, M.write = T.read_file, T.write_file

-- keys: name -> genpkey options (or a kind name of M.KINDS)
function M.keys(dir, keys)
  for name, opts in pairs(keys) do
    opts = M.KINDS[opts] or opts
    M.sh("openssl genpkey " .. opts .. " -out " .. dir .. "/" .. name .. ".pem")
    M.sh("openssl pkey -in " .. dir .. "/" .. name .. ".pem -pubout -out " .. dir .. "/" .. name .. ".pub")
  end
end

local B64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"

-- base64url without padding
function M.b64url(s)
  local out = {}
  for i = 1, #s, 3 do
    local a, b, c = s:byte(i, i + 2)
    local v = a * 65536 + (b or 0) * 256 + (c or 0)
    local n = c and 4 or b and 3 or 2
    for k = 1, n do
      local idx = (v >> (18 - 6 * (k - 1))) & 63
      out[#out + 1] = B64:sub(idx + 1, idx + 1)
    end
  end
  return table.concat(out)
end

-- An ECDSA-Sig-Value (DER) as JWS wants it: r || s, each size bytes.
local function der_to_raw(der, size)
  local pos = der:byte(2) >= 0x80 and 3 + (der:byte(2) - 0x80) or 3
  local function int()
    assert(der:byte(pos) == 0x02, "not a DER integer")
    local len = der:byte(pos + 1)
    local v = der:sub(pos + 2, pos + 1 + len):gsub("^%z+", "")
    pos = pos + 2 + len
    return ("\0"):rep(size - #v) .. v
  end
  return int() .. int()
end

-- A compact JWS of claims (a table) with the openssl CLI: alg HS256 (key: a
-- secret), RS256/PS256 or ES256/ES384 or EdDSA (key: a PEM file's path).
function M.sign(claims, key, alg, kid)
  local header = { alg = alg, typ = "JWT", kid = kid }
  local input = M.b64url(cjson.encode(header)) .. "." .. M.b64url(cjson.encode(claims))
  local dir = output("mktemp -d"):match("%S+")
  M.write(dir .. "/in", input)
  local sig
  if alg == "HS256" then
    M.write(dir .. "/key", key)
    sig = output("openssl dgst -sha256 -mac HMAC -macopt hexkey:" ..
                 (key:gsub(".", function(c) return string.format("%02x", c:byte()) end)) ..
                 " -binary " .. dir .. "/in")
  elseif alg == "EdDSA" then
    M.sh("openssl pkeyutl -sign -rawin -inkey " .. key .. " -in " .. dir .. "/in -out " .. dir .. "/sig")
    sig = M.read(dir .. "/sig")
  else
    local bits = alg:sub(3)
    local pss = alg:match("^PS") and " -sigopt rsa_padding_mode:pss -sigopt rsa_pss_saltlen:" .. (tonumber(bits) // 8) or ""
    sig = output("openssl dgst -sha" .. bits .. " -sign " .. key .. pss .. " -binary " .. dir .. "/in")
    if alg:match("^ES") then sig = der_to_raw(sig, bits == "256" and 32 or 48) end
  end
  os.execute("rm -rf " .. dir)
  return input .. "." .. M.b64url(sig)
end

local function unhex(s)
  return (s:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- The kind of a key from its name's prefix: rsa*, p256*, p384*, ed*.
function M.jwk(dir, name, kid, extra)
  local b64 = M.b64url
  local t
  if name:match("^rsa") then
    local modulus = output("openssl rsa -pubin -in " .. dir .. "/" .. name .. ".pub -noout -modulus")
    t = { kty = "RSA", n = b64(unhex(modulus:match("Modulus=(%x+)"))), e = "AQAB" }
  else
    local der = output("openssl pkey -pubin -in " .. dir .. "/" .. name .. ".pub -outform DER")
    if name:match("^ed") then
      t = { kty = "OKP", crv = "Ed25519", x = b64(der:sub(-32)) }
    else
      local size = name:match("^p256") and 32 or 48
      local point = der:sub(-(2 * size))
      t = { kty = "EC", crv = size == 32 and "P-256" or "P-384",
            x = b64(point:sub(1, size)), y = b64(point:sub(size + 1)) }
    end
  end
  t.kid = kid
  for k, v in pairs(extra or {}) do t[k] = v end
  return t
end

return M
