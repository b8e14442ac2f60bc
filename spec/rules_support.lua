-- Shared by publish_rules_spec and cluster_rules_spec: the bad messages,
-- and a script that runs tinysse.publish with arguments from a request.
local T = require "support"
local assert = require "luassert"
local M = {}

-- A script whose issue_token hook runs tinysse.publish with the arguments
-- in the request body (a JSON array) and answers what happened as the
-- "token": "ok:<id>" or "err:<message>".
local SCRIPT = [[
local tinysse = require "tinysse"
local cjson = require "cjson"
local s = dofile(os.getenv("TINYSSE_ROOT") .. "/spec/e2e/scripts/test.lua")
s.issue_token = function(req)
  local a = cjson.decode(req.body)
  local ok, r = pcall(tinysse.publish, a[1], a[2], a[3], a[4] ~= cjson.null and a[4] or nil)
  return ok and ("ok:" .. tostring(r)) or ("err:" .. tostring(r)), 60
end
return s
]]

local long = ("x"):rep(201)
local many = {}
for i = 1, 65 do many[i] = "c" .. i end

-- name, targets, handler_id, event
local CASES = {
  { "a private channel", { "\1status" }, 0, nil },
  { "a control character", { "a\tb" }, 0, nil },
  { "an empty target", { "" }, 0, nil },
  { "a target past 200 bytes", { long }, 0, nil },
  { "65 targets", many, 0, nil },
  { "handler_id 256", { "all" }, 256, nil },
  { "handler_id -1", { "all" }, -1, nil },
  { "an event with a space", { "all" }, 0, "a b" },
  { "an event with a line break", { "all" }, 0, "a\nb" },
  { "an event of 65 characters", { "all" }, 0, ("e"):rep(65) },
}

function M.script_path()
  local dir = T.tmpdir()
  T.write_file(dir .. "/rules.lua", SCRIPT)
  return dir .. "/rules.lua"
end

-- What tinysse.publish said, through the script.
local function script_publish(g, targets, handler, event)
  local body = T.json.encode({ targets, { n = 1 }, handler, event or T.json.null })
  local st, _, _, j = g:request("POST", "/auth/sse-token",
                                { Authorization = "Bearer " .. g.key }, body)
  assert.are.equal(200, st)
  return j.token
end

-- The message POST /publish answers for the same message.
local function http_publish(g, targets, handler, event)
  local st, _, _, j = g:publish({ targets = targets, handler_id = handler, data = { n = 1 }, event = event })
  return st, j
end

function M.check_all(g)
  local published_before = g:metric("tinysse_messages_published_total")
  for _, c in ipairs(CASES) do
    local name, targets, handler, event = c[1], c[2], c[3], c[4]
    local st, j = http_publish(g, targets, handler, event)
    assert.are.equal(400, st, name)
    local said = script_publish(g, targets, handler, event)
    assert.truthy(said:find("^err:"), name .. ": " .. said)
    -- the same words as the HTTP answer (after the function's name)
    assert.truthy(said:find("tinysse.publish: " .. j.message, 1, true),
                  name .. ": script got '" .. said .. "', HTTP said '" .. j.message .. "'")
  end
  -- a valid one goes through both ways
  assert.are.equal(200, (http_publish(g, { "all" }, 1, "ok.event")))
  local said = script_publish(g, { "all" }, 1, "ok.event")
  assert.truthy(said:find("^ok:"), said)
  return published_before
end


return M
