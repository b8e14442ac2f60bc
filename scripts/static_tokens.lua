-- Static tokens: a fixed table of subscriber tokens and publisher tokens,
-- for small deployments and demos. Replace every token below with a long
-- random one (e.g. `openssl rand -hex 24`) before exposing the gateway.
local tinysse = require "tinysse"

-- Subscriber token -> who it is.
local subscribers = {
  ["sub-0f3c9a1e7b5d4c2a9e8f"] = { user = "alice", role = "admin" },
  ["sub-7d2e4b6a1c9f8e3d5a0b"] = { user = "bob", role = "user" },
}

-- Publisher token (sent as "Authorization: Bearer <token>" to POST /publish)
-- -> the app's name, for your own records.
local publishers = {
  ["pub-3a8c1f9e6b2d7a4c0e5f"] = "billing-app",
}

-- Compare HMACs under a per-process key rather than the tokens themselves:
-- every comparison is then 32 bytes, whatever the token lengths, and all
-- entries are compared, so timing tells nothing about which nearly matched.
local key = tinysse.random_bytes(32)
local function digest(s) return tinysse.hmac_sha256(key, s) end

local function digests(tbl)
  local out = {}
  for token, value in pairs(tbl) do out[#out + 1] = { digest(token), value } end
  return out
end
local subscriber_digests, publisher_digests = digests(subscribers), digests(publishers)

local function lookup(list, token)
  if type(token) ~= "string" or token == "" then return nil end
  local d, found = digest(token), nil
  for _, entry in ipairs(list) do
    if tinysse.constant_time_eq(d, entry[1]) then found = entry[2] end
  end
  return found
end

local function validate_token(token)
  local who = lookup(subscriber_digests, token)
  if not who then return nil, "unknown token" end
  return who.user, who.role
end

local function authorize_publish(req)
  local auth = req.headers and req.headers["authorization"] or ""
  local token = auth:match("^[Bb]earer%s+(%S+)%s*$")
  if not token then return false, "missing Authorization: Bearer <publisher token>" end
  if not lookup(publisher_digests, token) then return false, "unknown publisher token" end
  return true
end

return {
  validate_token = validate_token,
  authorize_publish = authorize_publish,
}
