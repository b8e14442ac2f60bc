-- Benchmark script: tokens "b<N>" (user "b<N>", role "bench"), no crypto.
-- A stream joins "all" plus c0 .. c(K-1), K from ?k=K (default 1, max 256).
-- Used by bench/run; never use this script in production.
local M = {}

function M.validate_token(token)
  if token:match("^b%d+$") then return token, "bench" end
  return nil, "not a bench token"
end

function M.channels(user_id, role, req)
  local k = math.tointeger(tonumber(req.query.k or "1")) or 1
  if k < 1 then k = 1 elseif k > 255 then k = 255 end
  local list = { "all" }
  for i = 0, k - 1 do list[#list + 1] = "c" .. i end
  return list
end

return M
