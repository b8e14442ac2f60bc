-- For hooks_spec: on_connect/on_disconnect announce users on the "presence"
-- channel through tinysse.publish, with subscriber counts from tinysse.count.
local tinysse = require "tinysse"

return {
  validate_token = function(token)
    local user, role = token:match("^([%w%-]+):([%w%-]+)$")
    if not user then return nil, "malformed test token" end
    return user, role
  end,
  channels = function(user, role, req)
    local ch = { "all", "role:" .. role, "user:" .. user }
    if req.query.watch then ch[#ch + 1] = "presence" end
    return ch
  end,
  on_connect = function(client)
    if client.role == "watcher" then return end
    tinysse.publish({ "presence" }, { joined = client.user_id, count = tinysse.count("role:" .. client.role),
                                      channels = client.channels }, 5, "presence.joined")
  end,
  on_disconnect = function(client, reason)
    if client.role == "watcher" then return end
    tinysse.publish("presence", { left = client.user_id, reason = reason }, 5, "presence.left")
  end,
}
