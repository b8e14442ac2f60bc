-- Presence: everything default.lua does, plus "who is online" announcements.
-- When a user's stream opens or closes, a message goes to everyone in the
-- same role (channel role:<role>) with the event name presence.joined or
-- presence.left and the number of streams now open in that role:
--
--   event: presence.joined
--   data: {"id":"...","handler_id":0,"data":{"user":"42","online":3}}
--
-- Apps that need the full list can ask GET /channels?channel=role:<role>
-- with the publish key.
local tinysse = require "tinysse"

-- Reuse default.lua's tokens (HS256 with $TINYSSE_SECRET) from beside this file.
local dir = debug.getinfo(1, "S").source:match("^@(.*/)") or "./"
local hooks = dofile(dir .. "default.lua")

local function announce(event, client)
  local role_channel = "role:" .. client.role
  tinysse.publish({ role_channel },
                  { user = client.user_id, online = tinysse.count(role_channel) }, 0, event)
end

hooks.on_connect = function(client) announce("presence.joined", client) end
-- reason: "closed", "expired", "slow", "shutdown", ...; a user whose stream
-- drops as slow or at shutdown usually comes back within seconds.
hooks.on_disconnect = function(client, reason) announce("presence.left", client) end

return hooks
