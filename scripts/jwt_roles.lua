-- JWT with several roles: your auth server signs HS256 tokens with
--   {"sub":"42","roles":["admin","billing"],"exp":...}
-- and the subscriber joins all, role:admin, role:billing and user:42.
--
-- Run with: JWT_SECRET=... tinysse --script scripts/jwt_roles.lua
local tinysse = require "tinysse"

local secret = os.getenv("JWT_SECRET")
if not secret or secret == "" then
  error("jwt_roles.lua: set JWT_SECRET to the HS256 secret your auth server signs tokens with", 0)
end

-- Roles become channel names and are joined with "," in the role string,
-- so keep them to letters, digits and - _ .
local function valid_role(r)
  return type(r) == "string" and r:match("^[%w_.%-]+$") ~= nil
end

-- "42" and 42 both name user "42".
local function subject(v)
  if type(v) == "number" and math.tointeger(v) then return tostring(math.tointeger(v)) end
  if type(v) == "string" and v ~= "" then return v end
  return nil
end

local function validate_token(token)
  -- 30 s of leeway on exp/nbf absorbs clock skew with the auth server.
  local claims, why = tinysse.jwt_verify(token, secret, { leeway = 30 })
  if not claims then return nil, why end
  local sub = subject(claims.sub)
  if not sub then return nil, "token has no usable sub claim" end
  if type(claims.roles) ~= "table" then return nil, "token has no roles array" end
  for k, r in pairs(claims.roles) do
    if math.type(k) ~= "integer" then return nil, "roles must be an array" end
    if not valid_role(r) then return nil, "token has a bad role: " .. tostring(r) end
  end
  return sub, table.concat(claims.roles, ","), claims.exp and math.floor(claims.exp)
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
