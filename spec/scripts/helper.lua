-- Shared by the script specs: where the repository is, loading an operator
-- script with a chosen environment, and building requests and tokens.
-- tinysse.so is found through LUA_CPATH (build-lua/ locally, build/ in ctest).
local tinysse = require "tinysse"
local cjson = require "cjson"

local M = { tinysse = tinysse, cjson = cjson }
M.root = os.getenv("TINYSSE_ROOT") or "."

-- Runs scripts/<name>.lua with os.getenv answering only from env, so the
-- caller's real environment never leaks in. Returns the hooks table, or
-- raises the script's load error.
function M.load_script(name, env)
  env = env or {}
  local real_getenv = os.getenv
  os.getenv = function(k) return env[k] end
  local ok, hooks = pcall(dofile, M.root .. "/scripts/" .. name .. ".lua")
  os.getenv = real_getenv
  if not ok then error(hooks, 0) end
  return hooks
end

-- A `req` as the gateway builds it; fields override the defaults.
function M.req(fields)
  local r = { method = "GET", path = "/events", query = {}, headers = {},
              peer = "127.0.0.1:40000", publisher = false }
  for k, v in pairs(fields or {}) do r[k] = v end
  return r
end

-- The message of the error fn(...) raises (fails the test when none).
function M.error_of(fn, ...)
  local ok, err = pcall(fn, ...)
  assert(not ok, "expected an error")
  return tostring(err)
end

-- A JWT from raw header and payload JSON text, so specs can build tokens
-- tinysse.jwt_sign would refuse to make (alg none, arrays, bad claims).
function M.raw_token(header_json, payload_json, secret)
  local input = tinysse.base64url_encode(header_json) .. "." .. tinysse.base64url_encode(payload_json)
  if not secret then return input .. "." end
  return input .. "." .. tinysse.base64url_encode(tinysse.hmac_sha256(secret, input))
end

M.HS256 = '{"alg":"HS256","typ":"JWT"}'

return M
