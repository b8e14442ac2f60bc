-- Key pairs for the JWT specs, made by the openssl CLI (an implementation
-- independent of ours), and their public JWKs. keys(dir, {name = genpkey
-- options}) writes <name>.pem and <name>.pub into dir; jwk(dir, name, kid
-- [, extra]) is the public JWK of one.
local tinysse = require "tinysse"
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

local function unhex(s)
  return (s:gsub("%x%x", function(x) return string.char(tonumber(x, 16)) end))
end

-- The kind of a key from its name's prefix: rsa*, p256*, p384*, ed*.
function M.jwk(dir, name, kid, extra)
  local b64 = tinysse.base64url_encode
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
