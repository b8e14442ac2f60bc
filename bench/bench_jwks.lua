-- Benchmark script for W5R/W5E (the connect rate with asymmetric JWTs):
-- validate_token verifies a token against the JWKS file in
-- BENCH_JWKS_FILE (a key set, as an identity provider's JWKS URL gives
-- it), RS256 and ES256 allowed. Channels as in bench.lua.
local tinysse = require "tinysse"

local file = os.getenv("BENCH_JWKS_FILE")
if not file or file == "" then
  error("bench_jwks.lua: set BENCH_JWKS_FILE", 0)
end
local keys = tinysse.jwks(file)
local opts = { algs = { "RS256", "ES256" } }

local M = {}

function M.validate_token(token)
  local claims, why = tinysse.jwt_verify(token, keys, opts)
  if not claims then return nil, why end
  if type(claims.sub) ~= "string" then return nil, "no sub" end
  return claims.sub, "bench", claims.exp and math.floor(claims.exp)
end

-- the channels of bench.lua, next to this file
M.channels = dofile(debug.getinfo(1, "S").source:match("^@(.*/)") .. "bench.lua").channels

return M
