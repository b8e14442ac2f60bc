-- OpenID Connect: accept the access (or ID) tokens your identity provider
-- signs (Keycloak, Auth0, Okta, Entra ID, Dex...), checked against the keys
-- it publishes at its JWKS URL. The gateway fetches the key set, refreshes
-- it every OIDC_JWKS_REFRESH seconds and at once when a token names a key it
-- has not seen (key rotation). The subscriber joins all, role:<r> per role
-- and user:<id>.
--
-- Run with:
--   OIDC_JWKS_URL=https://idp.example.com/.well-known/jwks.json \
--   OIDC_ISSUER=https://idp.example.com/ \
--   tinysse --script scripts/oidc.lua
--
-- Settings (environment):
--   OIDC_JWKS_URL      the key set: an http(s) URL (or a JSON file) - required
--   OIDC_ISSUER        the "iss" tokens must carry, exactly - required
--   OIDC_AUDIENCE      an "aud" tokens must carry (unset: not checked)
--   OIDC_ALGS          accepted algorithms, comma-separated (RS256,ES256)
--   OIDC_ROLES_CLAIM   where the roles are, a dotted path for nested claims
--                      (roles; Keycloak: realm_access.roles); an array of
--                      strings or one string of space-separated roles
--   OIDC_USER_CLAIM    the user id claim (sub)
--   OIDC_LEEWAY        seconds of clock skew allowed on exp/nbf (30)
--   OIDC_JWKS_REFRESH  seconds between key set fetches (300)
local tinysse = require "tinysse"

local function setting(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

local function required(name, what)
  local v = setting(name)
  if not v then error("oidc.lua: set " .. name .. " to " .. what, 0) end
  return v
end

local function seconds(name, default, min)
  local v = setting(name)
  if not v then return default end
  local n = tonumber(v)
  if not n or n < min then
    error("oidc.lua: " .. name .. " must be a number of seconds >= " .. min .. ", not " .. v, 0)
  end
  return n
end

local JWKS_URL = required("OIDC_JWKS_URL", "your identity provider's JWKS URL (its jwks_uri)")
local ISSUER = required("OIDC_ISSUER", "the issuer your identity provider puts in tokens' iss claim")
local AUDIENCE = setting("OIDC_AUDIENCE")
local ROLES_CLAIM = setting("OIDC_ROLES_CLAIM", "roles")
local USER_CLAIM = setting("OIDC_USER_CLAIM", "sub")
local LEEWAY = seconds("OIDC_LEEWAY", 30, 0)
local REFRESH = seconds("OIDC_JWKS_REFRESH", 300, 1)

-- Only public-key algorithms: an HMAC key has no place in a published set.
local KNOWN_ALGS = { RS256 = true, RS384 = true, RS512 = true, PS256 = true,
                     ES256 = true, ES384 = true, EdDSA = true }
local ALGS = {}
for alg in setting("OIDC_ALGS", "RS256,ES256"):gmatch("[^,%s]+") do
  if not KNOWN_ALGS[alg] then
    error("oidc.lua: OIDC_ALGS: " .. alg .. " is not one of RS256, RS384, RS512, PS256, ES256, ES384, EdDSA", 0)
  end
  ALGS[#ALGS + 1] = alg
end
if #ALGS == 0 then error("oidc.lua: OIDC_ALGS names no algorithm", 0) end

-- Made once: every worker's state shares the gateway's fetched keys.
local ok, keys = pcall(tinysse.jwks, JWKS_URL, { refresh = REFRESH })
if not ok then error("oidc.lua: OIDC_JWKS_URL: " .. tostring(keys), 0) end

local verify_opts = { algs = ALGS, iss = ISSUER, aud = AUDIENCE, leeway = LEEWAY,
                      required = { "exp" } }

-- claims["a.b.c"] as claims.a.b.c; nil when a step is missing.
local function claim_at(claims, path)
  local v = claims
  for step in path:gmatch("[^.]+") do
    if type(v) ~= "table" then return nil end
    v = v[step]
  end
  return v
end

-- Roles become channel names and are joined with "," in the role string:
-- keep those made of letters, digits and - _ . and drop the rest (and any
-- past MAX_ROLES: a stream joins at most 256 channels).
local MAX_ROLES = 250
local function roles_of(claims)
  local v = claim_at(claims, ROLES_CLAIM)
  local list, seen = {}, {}
  local function add(r)
    if type(r) == "string" and r:match("^[%w_.%-]+$") and #r <= 100 and not seen[r] and #list < MAX_ROLES then
      seen[r] = true
      list[#list + 1] = r
    end
  end
  if type(v) == "string" then
    for r in v:gmatch("[^%s,]+") do add(r) end
  elseif type(v) == "table" then
    for _, r in ipairs(v) do add(r) end
  end
  return list
end

-- "42" and 42 both name user "42"; the id must fit in a channel name.
local function user_of(claims)
  local v = claim_at(claims, USER_CLAIM)
  if type(v) == "number" and math.tointeger(v) then v = tostring(math.tointeger(v)) end
  if type(v) ~= "string" or v == "" or #v > 190 or v:find("%c") then return nil end
  return v
end

local function validate_token(token)
  -- The reason (expired, bad_issuer, unknown_kid, jwks_unavailable...) goes
  -- back to the gateway; the token itself is never logged.
  local claims, why = tinysse.jwt_verify(token, keys, verify_opts)
  if not claims then return nil, why end
  local user = user_of(claims)
  if not user then return nil, "token has no usable " .. USER_CLAIM .. " claim" end
  local exp = math.type(claims.exp) and math.floor(claims.exp) or nil
  return user, table.concat(roles_of(claims), ","), exp
end

local function channels(user_id, role)
  local list = { "all" }
  for r in role:gmatch("[^,]+") do
    list[#list + 1] = "role:" .. r
  end
  list[#list + 1] = "user:" .. user_id
  return list
end

return {
  validate_token = validate_token,
  channels = channels,
}
