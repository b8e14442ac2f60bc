-- Ask your app: each stream token (and, if you say so, a session cookie) is
-- checked by a GET to an endpoint of your own backend, which answers
--   200 {"user":"42","role":"admin","channels":["user:42","all"],"expires_in":3600}
-- or 401/403 {"error":"..."}. Answers are cached for a while, keyed by an
-- HMAC of the token (never the token itself), so a reconnect storm does not
-- become a storm on your backend; refusals are cached for 5 seconds.
--
-- Run with:
--   AUTH_URL=http://127.0.0.1:3000/auth tinysse --script scripts/backend_auth.lua
--
-- Settings (environment):
--   AUTH_URL            the endpoint - required; gets "Authorization: Bearer <token>"
--   AUTH_TIMEOUT        seconds to wait for it (2)
--   AUTH_CACHE_SECONDS  how long an answer is reused, at most its expires_in (30; 0: never)
--   AUTH_CACHE_MAX      answers kept, the oldest dropped first (10000)
--   AUTH_COOKIE         a cookie name whose value is sent along ("Cookie: name=value")
-- With the gateway's --token-cookie NAME, the stream token itself may come
-- from a cookie (EventSource with credentials) instead of ?token=.
local tinysse = require "tinysse"
local cjson = require "cjson"

local function setting(name, default)
  local v = os.getenv(name)
  if v == nil or v == "" then return default end
  return v
end

local function number(name, default, min, integer)
  local v = setting(name)
  if not v then return default end
  local n = tonumber(v)
  if not n or n < min or (integer and not math.tointeger(n)) then
    error(("backend_auth.lua: %s must be %s >= %d, not %s"):format(name,
      integer and "a whole number" or "a number", min, v), 0)
  end
  return integer and math.tointeger(n) or n
end

local URL = setting("AUTH_URL")
if not URL then
  error("backend_auth.lua: set AUTH_URL to your app's auth endpoint, e.g. http://127.0.0.1:3000/auth", 0)
end
if not URL:match("^https?://[^%s]+$") then
  error("backend_auth.lua: AUTH_URL must be an http:// or https:// URL, not " .. URL, 0)
end
local TIMEOUT = number("AUTH_TIMEOUT", 2, 0)
if TIMEOUT <= 0 then error("backend_auth.lua: AUTH_TIMEOUT must be a number of seconds > 0", 0) end
local CACHE_SECONDS = number("AUTH_CACHE_SECONDS", 30, 0)
local CACHE_MAX = number("AUTH_CACHE_MAX", 10000, 1, true)
local COOKIE = setting("AUTH_COOKIE")
if COOKIE and not COOKIE:match("^[%w!#$%%&'*+.^_`|~-]+$") then
  error("backend_auth.lua: AUTH_COOKIE must be a cookie name, not " .. COOKIE, 0)
end
local DENY_SECONDS = math.min(5, CACHE_SECONDS)

-- A map that keeps at most max entries, dropping the oldest first. The
-- order list may hold stale keys (replaced or deleted); they are skipped,
-- and the list is compacted before it grows past twice the bound.
local function bounded(max)
  local m = { items = {}, order = {}, head = 1, tail = 0, count = 0, seq = 0 }
  function m.get(k) local e = m.items[k]; return e and e.value end
  function m.delete(k)
    if m.items[k] then m.items[k] = nil; m.count = m.count - 1 end
  end
  function m.set(k, value)
    m.delete(k)
    while m.count >= max do
      local o = m.order[m.head]
      m.order[m.head], m.head = nil, m.head + 1
      local e = m.items[o.key]
      if e and e.seq == o.seq then m.delete(o.key) end
    end
    m.seq = m.seq + 1
    m.items[k] = { value = value, seq = m.seq }
    m.count = m.count + 1
    m.tail = m.tail + 1
    m.order[m.tail] = { key = k, seq = m.seq }
    if m.tail - m.head + 1 > 2 * max + 16 then
      local live = {}
      for i = m.head, m.tail do
        local o = m.order[i]
        local e = m.items[o.key]
        if e and e.seq == o.seq then live[#live + 1] = o end
      end
      m.order, m.head, m.tail = live, 1, #live
    end
  end
  return m
end

local cache = bounded(CACHE_MAX)         -- HMAC(token, cookie) -> answer
local user_channels = bounded(CACHE_MAX) -- user id -> channels from the last answer
local key = tinysse.secret()

-- One warning a second at most: a dead backend must not flood the log.
local last_warn, quiet = -math.huge, 0
local function warn(msg)
  local now = tinysse.now()
  if now - last_warn < 1 then quiet = quiet + 1; return end
  if quiet > 0 then msg = msg .. (" (and %d more since the last warning)"):format(quiet) end
  last_warn, quiet = now, 0
  tinysse.log("warn", "backend_auth.lua: " .. msg)
end

-- A value fit to show in a reason or a log line.
local function printable(s, max)
  return (tostring(s):gsub("%c", "?"):sub(1, max))
end

local function user_of(v)
  if math.type(v) == "integer" then v = tostring(v) end
  if type(v) ~= "string" or v == "" or #v > 190 or v:find("%c") then return nil end
  return v
end

-- The answer's channels: names of 1-200 bytes without control characters,
-- at most 256; nil when it gives none, so the channels hook falls back.
local function channels_of(v)
  if type(v) ~= "table" then return nil end
  local list = {}
  for _, c in ipairs(v) do
    if type(c) == "string" and #c >= 1 and #c <= 200 and not c:find("%c") and #list < 256 then
      list[#list + 1] = c
    end
  end
  return #list > 0 and list or nil
end

-- 200: {user, role, exp, channels} and how long it may be cached; nil, why
-- when the body is not the answer agreed on.
local function accepted(body, now)
  local ok, a = pcall(cjson.decode, body or "")
  if not ok or type(a) ~= "table" then return nil, "the answer is not JSON" end
  local user = user_of(a.user)
  if not user then return nil, "the answer has no usable user" end
  local role = a.role == nil and "" or a.role
  if type(role) ~= "string" or role:find("%c") then return nil, "the answer's role is not a string" end
  local ttl, exp = CACHE_SECONDS, nil
  if type(a.expires_in) == "number" and a.expires_in >= 0 then
    exp = math.floor(now + a.expires_in)
    ttl = math.min(ttl, a.expires_in)
  end
  return { user = user, role = role, exp = exp, channels = channels_of(a.channels) }, ttl
end

local function refused(body)
  local ok, a = pcall(cjson.decode, body or "")
  if ok and type(a) == "table" and type(a.error) == "string" and a.error ~= "" then
    return "rejected by the backend: " .. printable(a.error, 200)
  end
  return "rejected by the backend"
end

local function remember(answer, req)
  if answer.channels then
    user_channels.set(answer.user, answer.channels)
  else
    user_channels.delete(answer.user)
  end
  -- the channels hook gets this same req table
  if type(req) == "table" then req.backend_auth_channels = answer.channels end
  return answer.user, answer.role, answer.exp
end

local function validate_token(token, req)
  token = type(token) == "string" and token or ""
  local cookie = COOKIE and type(req) == "table" and type(req.cookies) == "table" and req.cookies[COOKIE] or nil
  if type(cookie) ~= "string" or cookie == "" or cookie:find("[%c;]") then cookie = nil end
  if token == "" and not cookie then return nil, "no token" end
  if #token > 8192 or token:find("[%c%s]") then return nil, "malformed token" end

  local k = tinysse.hmac_sha256(key, token .. "\0" .. (cookie or ""))
  local hit = cache.get(k)
  if hit and hit.until_ > tinysse.now() then
    if hit.why then return nil, hit.why end
    return remember(hit, req)
  elseif hit then
    cache.delete(k)
  end

  local headers = {}
  if token ~= "" then headers.authorization = "Bearer " .. token end
  if cookie then headers.cookie = COOKIE .. "=" .. cookie end
  local status, body = tinysse.http { method = "GET", url = URL, headers = headers, timeout = TIMEOUT }
  local now = tinysse.now() -- the call took a while
  local why
  if status == 200 then
    local answer, ttl = accepted(body, now)
    if answer then
      if ttl > 0 then answer.until_ = now + ttl; cache.set(k, answer) end
      return remember(answer, req)
    end
    why = ttl
  elseif status == 401 or status == 403 then
    why = refused(body)
    if DENY_SECONDS > 0 then cache.set(k, { why = why, until_ = now + DENY_SECONDS }) end
    return nil, why
  elseif status then
    why = "status " .. tostring(status)
  else
    why = printable(body or "no answer", 100) -- timeout, connect_failed, too_large...
  end
  warn("auth backend unavailable: " .. why)
  return nil, "auth backend unavailable: " .. why
end

local function channels(user_id, _, req)
  return type(req) == "table" and req.backend_auth_channels
    or user_channels.get(user_id)
    or { "all", "user:" .. user_id }
end

return {
  validate_token = validate_token,
  channels = channels,
}
