-- The script the browser tests run the gateway with. Tokens are readable on
-- purpose: "user:role" or "user:role:ttl" (ttl in seconds from now, so a test
-- can make a token expire mid-stream); anything else is refused with 401.
local tinysse = require "tinysse"
local cjson = require "cjson"

local M = {}

function M.validate_token(token)
  local user, role, ttl = token:match("^([%w%-]+):([%w%-]+):?(%d*%.?%d*)$")
  if not user then return nil, "malformed test token" end
  return user, role, ttl ~= "" and tinysse.now() + tonumber(ttl) or nil
end

-- POST /auth/sse-token with the publish key and {"user":..,"role":..[,"ttl":s]}.
function M.issue_token(req)
  if not req.publisher then return nil, "needs the publish key" end
  local ok, body = pcall(cjson.decode, req.body or "")
  if not ok or type(body) ~= "table" then return nil, "body must be a JSON object" end
  local user, role = tostring(body.user or "demo"), tostring(body.role or "user")
  if not (user:match("^[%w%-]+$") and role:match("^[%w%-]+$")) then
    return nil, "user and role: letters, digits and dashes"
  end
  local ttl = math.tointeger(tonumber(body.ttl) or 600) or 600
  return user .. ":" .. role .. ":" .. ttl, ttl
end

return M
