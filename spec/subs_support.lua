-- What the server-side subscription specs share (subscriptions_spec,
-- cluster_subscriptions_spec), with spec/e2e/scripts/subscriptions.lua as
-- the gateway's script: POST /subscriptions, publishing, and streams that
-- know their connection id.
local T = require "support"
local cjson = require "cjson"
local assert = require "luassert"

local M = {}
M.SCRIPT = T.root .. "/spec/e2e/scripts/subscriptions.lua"
M.KEY = { Authorization = "Bearer " .. T.publish_key, ["Content-Type"] = "application/json" }

-- POST /subscriptions with body (a table, or raw text): status, json, raw body.
function M.subscribe(g, body, headers)
  local st, _, raw, j = g:request("POST", "/subscriptions", headers or M.KEY,
                                  type(body) == "string" and body or cjson.encode(body))
  return st, j, raw
end

-- Publishes data to targets (must be answered 200); the id.
function M.publish(g, targets, data)
  local st, _, body, j = g:publish({ targets = targets, data = data })
  assert.are.equal(200, st, body)
  return j.id
end

-- A stream of `token` and its connection id, from on_connect's message on
-- the stream's own user channel; what came before it (a replay, or other
-- hook messages) is in s.before, its channels in s.channels.
function M.open(g, token, headers, wait)
  local s = g:stream("/events?token=" .. token, headers)
  assert.are.equal(200, s.status)
  s.before = {}
  while not s.cid do
    local ev = s:message(wait or (T.valgrind and 15 or 5))
    assert(ev and ev.json, "no hello on the stream")
    if type(ev.json.data) == "table" and ev.json.data.hello then
      s.cid = ev.json.data.hello
      s.channels = ev.json.data.channels
    else
      s.before[#s.before + 1] = ev.json.data
    end
  end
  return s
end

-- The data of the messages that arrive within `quiet` seconds of each
-- other (only string data with strings_only).
function M.datas(s, quiet, strings_only)
  local out = {}
  for _, ev in ipairs(s:drain(quiet or (T.valgrind and 1.5 or 0.4))) do
    if ev.json and (not strings_only or type(ev.json.data) == "string") then out[#out + 1] = ev.json.data end
  end
  return out
end

return M
