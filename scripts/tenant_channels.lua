-- Tenant channels: one gateway shared by many tenants, none able to see or
-- publish to another's channels. Your auth server signs HS256 tokens:
--   subscribers: {"tenant":"acme","sub":"42","role":"admin","exp":...}
--     -> tenant:acme, tenant:acme:role:admin, tenant:acme:user:42
--   publishers:  {"tenant":"acme","scope":"publish","exp":...}, sent as
--     "Authorization: Bearer <token>" to POST /publish; every target must be
--     tenant:acme or start with tenant:acme:
--
-- Run with: JWT_SECRET=... tinysse --script scripts/tenant_channels.lua
local tinysse = require "tinysse"
local cjson = require "cjson"

local secret = os.getenv("JWT_SECRET")
if not secret or secret == "" then
  error("tenant_channels.lua: set JWT_SECRET to the HS256 secret your auth server signs tokens with", 0)
end

-- Names end up inside channel names, where ":" separates the parts.
local function name(v)
  if type(v) == "number" and math.tointeger(v) then v = tostring(math.tointeger(v)) end
  if type(v) == "string" and v:match("^[%w_.@%-]+$") then return v end
  return nil
end

-- The user id is "<tenant>:<sub>": the channels hook only sees the user id
-- and role, and user 42 of one tenant is not user 42 of another.
local function validate_token(token)
  local claims, why = tinysse.jwt_verify(token, secret)
  if not claims then return nil, why end
  local tenant, sub = name(claims.tenant), name(claims.sub)
  local role = claims.role == nil and "user" or name(claims.role)
  if not tenant then return nil, "token has no usable tenant claim" end
  if not sub then return nil, "token has no usable sub claim" end
  if not role then return nil, "token has a bad role claim" end
  return tenant .. ":" .. sub, role, claims.exp and math.floor(claims.exp)
end

local function channels(user_id, role)
  local tenant, sub = user_id:match("^([^:]+):(.+)$")
  local t = "tenant:" .. tenant
  return { t, t .. ":role:" .. role, t .. ":user:" .. sub }
end

-- "publish" as a space-separated OAuth scope string, or in an array.
local function has_publish_scope(scope)
  if type(scope) == "string" then
    for word in scope:gmatch("%S+") do
      if word == "publish" then return true end
    end
  elseif type(scope) == "table" then
    for _, word in ipairs(scope) do
      if word == "publish" then return true end
    end
  end
  return false
end

local function split_commas(s)
  local out = {}
  for part in s:gmatch("[^,]+") do out[#out + 1] = part end
  return out
end

-- Every target the request would publish to. The raw form names them in
-- the query (the body is then the payload itself); otherwise the body is
-- one publish object or an array of them.
local function requested_targets(req)
  if req.query and req.query.targets then return split_commas(req.query.targets) end
  local ok, body = pcall(cjson.decode, req.body or "")
  if not ok or type(body) ~= "table" then return nil, "body is not a JSON object or array" end
  local messages = body[1] ~= nil and body or { body }
  local out = {}
  for _, m in ipairs(messages) do
    local targets = type(m) == "table" and m.targets
    if type(targets) == "string" then targets = { targets } end
    if type(targets) ~= "table" or targets[1] == nil then
      return nil, 'every message needs a non-empty "targets" array'
    end
    for _, target in ipairs(targets) do out[#out + 1] = target end
  end
  return out
end

local function authorize_publish(req)
  local auth = req.headers and req.headers["authorization"] or ""
  local token = auth:match("^[Bb]earer%s+(%S+)%s*$")
  if not token then return false, "missing Authorization: Bearer <token>" end
  local claims, why = tinysse.jwt_verify(token, secret)
  if not claims then return false, "bad token: " .. why end
  if not has_publish_scope(claims.scope) then return false, 'token lacks the "publish" scope' end
  local tenant = name(claims.tenant)
  if not tenant then return false, "token has no usable tenant claim" end

  local targets, err = requested_targets(req)
  if not targets then return false, err end
  if #targets == 0 then return false, "no targets" end
  local prefix = "tenant:" .. tenant
  for _, target in ipairs(targets) do
    if type(target) ~= "string" or
        (target ~= prefix and target:sub(1, #prefix + 1) ~= prefix .. ":") then
      return false, "target " .. tostring(target) .. " is outside tenant " .. tenant
    end
  end
  return true
end

return {
  validate_token = validate_token,
  channels = channels,
  authorize_publish = authorize_publish,
}
