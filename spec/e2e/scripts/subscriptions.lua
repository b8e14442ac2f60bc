-- The script of the server-side subscription specs: test.lua's readable
-- tokens ("user:role"), and hooks that show what a stream looks like from
-- Lua. Each stream's first message (on its own user channel) names its
-- connection id and channels; on disconnect the channels go to "audit".
-- Users "autojoin" and "autoleave" change their own stream from on_connect
-- with tinysse.subscribe / tinysse.unsubscribe.
local tinysse = require "tinysse"
local base = dofile(os.getenv("TINYSSE_ROOT") .. "/spec/e2e/scripts/test.lua")

local M = { config = {} }
M.validate_token = base.validate_token
M.channels = base.channels

function M.on_connect(client)
  if client.user_id == "autojoin" then
    local n = tinysse.subscribe({ client = client.id }, { "auto:" .. client.user_id }, { why = "joined" })
    tinysse.publish("user:" .. client.user_id, { joined = n })
  elseif client.user_id == "autoleave" then
    tinysse.unsubscribe(client.user_id, "all")
  elseif client.user_id == "luaerr" then
    local ok, err = pcall(tinysse.subscribe, { client = client.id }, { "" })
    tinysse.publish("user:" .. client.user_id, { ok = ok, err = tostring(err) })
  end
  if client.user_id ~= "audit" then
    tinysse.publish("user:" .. client.user_id, { hello = client.id, channels = client.channels })
  end
end

function M.on_disconnect(client, reason)
  if client.user_id ~= "audit" then
    tinysse.publish("audit", { bye = client.id, channels = client.channels })
  end
end

return M
