-- test.lua plus publishing from the script, for the idempotency specs:
-- POST /auth/sse-token runs tinysse.publish X-Times times (X-Data to
-- X-Channel under the key X-Idem-Key) and answers, as the "token", a JSON
-- list of {ok, id or error} per call. With TINYSSE_TEST_OTHER_PUBLISHER
-- set, a bearer of that token may publish too (authorize_publish).
local tinysse = require "tinysse"
local cjson = require "cjson"
local M = dofile(os.getenv("TINYSSE_ROOT") .. "/spec/e2e/scripts/test.lua")

local other = os.getenv("TINYSSE_TEST_OTHER_PUBLISHER")
if other then
  M.authorize_publish = function(req)
    return req.headers.authorization == "Bearer " .. other, "not a publisher"
  end
end

M.issue_token = function(req)
  local h = req.headers
  local out = {}
  for i = 1, tonumber(h["x-times"] or "1") do
    local ok, res = pcall(tinysse.publish, { h["x-channel"] }, { v = h["x-data"] }, 3,
                          "scripted", h["x-idem-key"])
    out[i] = { ok = ok, res = res == nil and cjson.null or res }
  end
  return cjson.encode(out), 60
end

return M
