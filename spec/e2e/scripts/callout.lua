-- The call-out spec's script (spec/e2e/callout_spec.lua): hooks that ask
-- the test backend (spec/fault/backend.c, at $BACKEND) over tinysse.http.
-- A stream token is "<mode>:<user>"; the mode says what validate_token does.
local tinysse = require "tinysse"
local cjson = require "cjson"

local backend = os.getenv("BACKEND") or "http://127.0.0.1:1"

-- At the top level a call-out cannot wait: it says so.
local _, top_level = tinysse.http{ url = backend .. "/delay?ms=0" }
tinysse.log("info", "top-level call-out: " .. tostring(top_level))

local function spin(seconds)
  local t = os.clock()
  while os.clock() - t < seconds do end
end

local modes = {
  ok = function() return tinysse.http{ url = backend .. "/delay?ms=0" } end,
  hang = function() return tinysse.http{ url = backend .. "/hang", timeout = 0.5 } end,
  hang30 = function() return tinysse.http{ url = backend .. "/hang", timeout = 30 } end,
  garbage = function() return tinysse.http{ url = backend .. "/garbage" } end,
  refused = function() return tinysse.http{ url = "http://127.0.0.1:1/" } end,
  badurl = function() return tinysse.http{ url = "ftp://example/" } end,
  status = function() return tinysse.http{ url = backend .. "/delay?ms=0&status=503" } end,
  -- waits longer than --hook-timeout (a CPU budget, not a wall-clock one)
  wait = function() return tinysse.http{ url = backend .. "/delay?ms=600" } end,
  -- two call-outs in a row, then CPU work past the budget
  twice = function()
    local st = tinysse.http{ url = backend .. "/delay?ms=50" }
    if st ~= 200 then return nil, "first" end
    return tinysse.http{ url = backend .. "/delay?ms=50" }
  end,
  spin = function()
    tinysse.http{ url = backend .. "/delay?ms=10" }
    spin(5)
    return 200
  end,
  -- inside pcall: yields across it (Lua 5.4's pcall is yieldable)
  pcall = function()
    local ok, st = pcall(tinysse.http, { url = backend .. "/delay?ms=20" })
    return ok and st or nil, "pcall"
  end,
}

local function validate_token(token, req)
  local mode, user = token:match("^([%w]+):([%w_%-]+)$")
  local delay = mode and mode:match("^delay(%d+)$")
  local status, body
  if delay then
    status, body = tinysse.http{ url = backend .. "/delay?ms=" .. delay }
  elseif mode and modes[mode] then
    status, body = modes[mode]()
  else
    return nil, "unknown mode"
  end
  if not status then return nil, "backend: " .. tostring(body) end
  if status ~= 200 then return nil, "backend status " .. tostring(status) end
  return user, (req.cookies and req.cookies.role) or "member"
end

-- A user named "echo..." gets a channel named from the backend's echo of a
-- header the hook sent.
local function channels(user_id, role, req)
  local list = { "all", "user:" .. user_id, "role:" .. role }
  if user_id:match("^echo") then
    local st, body, headers = tinysse.http{ url = backend .. "/echo", method = "POST",
                                            headers = { ["x-probe"] = user_id }, body = "b" }
    local e = st == 200 and cjson.decode(body)
    list[#list + 1] = "echo:" .. tostring(e and e.headers["x-probe"]) .. ":" ..
                      tostring(headers and headers["content-type"])
  end
  return list
end

local function authorize_publish(req)
  local st = tinysse.http{ url = backend .. "/delay?ms=100" }
  if st ~= 200 then return false, "backend down" end
  if req.headers["x-allow"] == "yes" then return true end
  return false, "the backend said no"
end

local function issue_token(req)
  local st, body = tinysse.http{ url = backend .. "/delay?ms=50&body=tok" }
  if st ~= 200 then return nil, "backend down" end
  return "ok:" .. body, 60
end

local function on_disconnect(client, reason)
  tinysse.http{ url = backend .. "/echo?bye=" .. client.user_id }
end

return {
  validate_token = validate_token,
  channels = channels,
  authorize_publish = authorize_publish,
  issue_token = issue_token,
  on_disconnect = on_disconnect,
}
