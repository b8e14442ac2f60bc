-- Benchmark script for the connect-rate workload: validate_token verifies
-- an HS256 JWT {"sub":..., "role":..., "exp":...} with the secret in
-- BENCH_JWT_SECRET. Channels as in bench.lua ("all", c0 .. c(K-1)).
local tinysse = require "tinysse"

local secret = os.getenv("BENCH_JWT_SECRET")
if not secret or secret == "" then
  error("bench_jwt.lua: set BENCH_JWT_SECRET", 0)
end

local M = {}

function M.validate_token(token)
  local claims, why = tinysse.jwt_verify(token, secret)
  if not claims then return nil, why end
  if type(claims.sub) ~= "string" then return nil, "no sub" end
  return claims.sub, type(claims.role) == "string" and claims.role or "bench",
    claims.exp and math.floor(claims.exp)
end

function M.channels(user_id, role, req)
  local k = math.tointeger(tonumber(req.query.k or "1")) or 1
  if k < 1 then k = 1 elseif k > 255 then k = 255 end
  local list = { "all" }
  for i = 0, k - 1 do list[#list + 1] = "c" .. i end
  return list
end

return M
