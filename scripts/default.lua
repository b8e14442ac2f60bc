-- The default script: safe to expose to the internet, and a quickstart still
-- works.
--
--   * Subscribers present an HS256 JWT signed with $TINYSSE_SECRET (or, when
--     unset, with a random secret the gateway makes at start, so tokens die
--     with the process). Claims: sub -> user id, role (default "user"),
--     exp -> the stream is closed when the token expires.
--   * Tokens come from POST /auth/sse-token, called with the publish key:
--       {"user":"42","role":"admin","ttl":3600}
--   * Nobody publishes without the gateway's publish key (no
--     authorize_publish here).
--   * Anonymous subscribers only when the operator sets TINYSSE_ANONYMOUS=1:
--     then anyone may fetch a short-lived token for role "anonymous".
local tinysse = require "tinysse"
local cjson = require "cjson"

local function env(name)
  local v = os.getenv(name)
  if v == "" then return nil end
  return v
end

local secret = env("TINYSSE_SECRET") or tinysse.secret()
local anonymous = env("TINYSSE_ANONYMOUS") == "1"

local DEFAULT_TTL, MAX_TTL, ANON_TTL = 3600, 86400, 3600

-- "42" and 42 both name user "42"; 4.5, "" and tables name nobody.
local function user_id(v)
  if type(v) == "number" then v = math.tointeger(v) end
  if type(v) == "number" then return tostring(v) end
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

local function sign(user, role, ttl)
  local now = tinysse.time()
  return tinysse.jwt_sign({ sub = user, role = role, iat = now, exp = now + ttl }, secret)
end

local function validate_token(token)
  local claims, why = tinysse.jwt_verify(token, secret)
  if not claims then return nil, why end
  local user = user_id(claims.sub)
  if not user then return nil, "token has no usable sub claim" end
  local role = claims.role or "user"
  if type(role) ~= "string" or role == "" then return nil, "token has a bad role claim" end
  -- Tokens handed out while anonymous access was on stop working when it is off.
  if role == "anonymous" and not anonymous then return nil, "anonymous access is disabled" end
  local exp = claims.exp and math.floor(claims.exp)
  return user, role, exp
end

local function issue_token(req)
  if req.publisher then
    local body = req.body or ""
    if not body:match("^%s*{") then
      return nil, 'body must be a JSON object like {"user":"42","role":"admin","ttl":3600}'
    end
    local ok, t = pcall(cjson.decode, body)
    if not ok then return nil, "body is not valid JSON" end
    local user = user_id(t.user)
    if not user then return nil, 'field "user" is required (a string or an integer)' end
    local role = t.role == nil and "user" or t.role
    if type(role) ~= "string" or role == "" then return nil, 'field "role" must be a non-empty string' end
    local ttl = t.ttl == nil and DEFAULT_TTL or t.ttl
    if type(ttl) ~= "number" or ttl < 1 or ttl ~= ttl then
      return nil, 'field "ttl" must be a number of seconds >= 1'
    end
    ttl = math.floor(math.min(ttl, MAX_TTL))
    return sign(user, role, ttl), ttl
  end
  if anonymous then
    return sign("anon-" .. tinysse.hex(tinysse.random_bytes(4)), "anonymous", ANON_TTL), ANON_TTL
  end
  return nil, "token issuing needs the publish key"
end

return {
  validate_token = validate_token,
  issue_token = issue_token,
}
