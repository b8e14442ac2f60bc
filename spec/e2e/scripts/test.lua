-- The script the end-to-end specs run against. Tokens are readable on
-- purpose: "user:role" or "user:role:ttl" (ttl in seconds from now); a few
-- magic tokens make hooks misbehave so specs can check containment.
local tinysse = require "tinysse"

local M = { config = {} }

function M.validate_token(token, req)
  if token == "boom" then error("validate_token exploded on purpose") end
  if token == "loop" then while true do end end
  if token == "hog" then local t = {} for i = 1, 1e9 do t[i] = ("x"):rep(1 << 20) .. i end end
  if token == "badtype" then return {} end
  if token == "norole" then return "u1" end
  local user, role, ttl = token:match("^([%w%-]+):([%w%-]+):?(%d*%.?%d*)$")
  if not user then return nil, "malformed test token" end
  local exp = ttl ~= "" and (tinysse.now() + tonumber(ttl)) or nil
  return user, role, exp
end

function M.channels(user, role, req)
  if user == "badchannels" then return "all" end
  local ch = { "all", "role:" .. role, "user:" .. user }
  local extra = req.query.extra
  if extra then ch[#ch + 1] = extra end
  return ch
end

function M.issue_token(req)
  if not req.publisher then return nil, "needs the publish key" end
  return "issued:user", 60
end

return M
