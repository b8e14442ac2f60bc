-- Publishing and the small endpoints: authorisation, body forms, errors
-- that name the field, limits, keep-alive, /channels, /healthz, /metrics.
local T = require "support"
local cjson = T.json

describe("POST /publish", function()
  local g
  setup(function() g = T.start({ args = { "--max-body", "2048", "--max-header", "1024" } }) end)
  teardown(function() g:stop() end)

  it("needs the publish key: 401 without, 403 with a wrong one", function()
    local st, _, _, j = g:publish({ targets = { "all" }, handler_id = 0, data = 1 }, false)
    assert.are.equal(401, st)
    assert.are.equal("auth", j.error)
    st, _, _, j = g:publish({ targets = { "all" }, handler_id = 0, data = 1 }, "wrong-key-wrong-key")
    assert.are.equal(403, st)
    assert.are.equal("forbidden", j.error)
  end)

  it("answers a single message with its id and an array with ids in order", function()
    local st, _, _, j = g:publish({ targets = { "all" }, handler_id = 0, data = 1 })
    assert.are.equal(200, st)
    assert.truthy(j.id:match("^%d+%-%d+$"))
    local st2, _, _, j2 = g:publish({
      { targets = { "all" }, handler_id = 1, data = "a" },
      { targets = { "all" }, handler_id = 2, data = "b" },
      { targets = { "all" }, handler_id = 3, data = "c" } })
    assert.are.equal(200, st2)
    assert.are.equal(3, #j2.ids)
    local function seq(id) return tonumber(id:match("%-(%d+)$")) end
    assert.are.equal(seq(j.id) + 1, seq(j2.ids[1]))
    assert.are.equal(seq(j2.ids[1]) + 1, seq(j2.ids[2]))
    assert.are.equal(seq(j2.ids[2]) + 1, seq(j2.ids[3]))
  end)

  it("delivers an array's messages in order", function()
    local s = g:stream("/events?token=p1:user")
    s:next(2)
    g:publish({ { targets = { "user:p1" }, handler_id = 0, data = 1 },
                { targets = { "user:p1" }, handler_id = 0, data = 2 },
                { targets = { "user:p1" }, handler_id = 0, data = 3 } })
    local got = s:drain(0.4)
    assert.are.same({ 1, 2, 3 }, { got[1].json.data, got[2].json.data, got[3].json.data })
    s:close()
  end)

  local bad = {
    { "not json at all", "" },
    { '{"targets":["all"],"handler_id":0}', "data" },
    { '{"handler_id":0,"data":1}', "targets" },
    { '{"targets":"all","handler_id":0,"data":1}', "targets" },
    { '{"targets":[],"handler_id":0,"data":1}', "targets" },
    { '{"targets":[""],"handler_id":0,"data":1}', "targets" },
    { '{"targets":[7],"handler_id":0,"data":1}', "targets" },
    { '{"targets":["all"],"handler_id":256,"data":1}', "handler_id" },
    { '{"targets":["all"],"handler_id":-1,"data":1}', "handler_id" },
    { '{"targets":["all"],"handler_id":"3","data":1}', "handler_id" },
    { '{"targets":["all"],"handler_id":1.5,"data":1}', "handler_id" },
    { '{"targets":["all"],"handler_id":0,"data":1,"event":"has space"}', "event" },
    { '{"targets":["all"],"handler_id":0,"data":1,"target":"x"}', "target" },
    { '[{"targets":["all"],"handler_id":0,"data":1},{"targets":["all"],"handler_id":900,"data":1}]', "[1].handler_id" },
    { '[]', "" },
    { '{"targets":["all"],"handler_id":0,"data":1} trailing', "" },
    { '42', "" },
  }
  for _, case in ipairs(bad) do
    it("answers 400 naming the field for " .. case[1]:sub(1, 60), function()
      local st, _, body, j = g:publish(case[1])
      assert.are.equal(400, st, body)
      assert.are.equal("bad_request", j.error)
      assert.are.equal(case[2], j.field)
      assert.truthy(#j.message > 0)
    end)
  end

  it("refuses JSON nested deeper than 64 levels (nesting)", function()
    local deep = ("["):rep(100) .. ("]"):rep(100)
    local st, _, _, j = g:publish('{"targets":["all"],"handler_id":0,"data":' .. deep .. '}')
    assert.are.equal(400, st)
    assert.truthy(j.message:find("nesting too deep", 1, true), j.message)
    local ok = ("["):rep(30) .. ("]"):rep(30)
    assert.are.equal(200, (g:publish('{"targets":["all"],"handler_id":0,"data":' .. ok .. '}')))
  end)

  it("publishes nothing from a bad array", function()
    local s = g:stream("/events?token=p2:user")
    s:next(2)
    g:publish('[{"targets":["all"],"handler_id":0,"data":1},{"targets":["all"],"handler_id":900,"data":1}]')
    assert.are.same({}, s:drain(0.3))
    s:close()
  end)

  it("takes the raw form and embeds the payload as sent", function()
    local s = g:stream("/events?token=p3:user")
    s:next(2)
    local st, _, _, j = g:request("POST", "/publish?targets=role:x,user:p3&handler_id=4&event=raw.one",
      { Authorization = "Bearer " .. g.key }, '{"big":12345678901234567890,"f":0.1}')
    assert.are.equal(200, st)
    local ev = s:message(2)
    assert.are.equal(j.id, ev.id)
    assert.are.equal("raw.one", ev.event)
    assert.truthy(ev.text:find('"data":{"big":12345678901234567890,"f":0.1}', 1, true))
    st = g:request("POST", "/publish?targets=all", { Authorization = "Bearer " .. g.key }, "{nope")
    assert.are.equal(400, st)
    -- a bare number or literal is a whole payload too, embedded as sent
    for _, body in ipairs({ "1", "true", "null", "12345678901234567890" }) do
      st = g:request("POST", "/publish?targets=user:p3", { Authorization = "Bearer " .. g.key }, body)
      assert.are.equal(200, st, body)
      assert.truthy(s:message(2).text:find('"data":' .. body .. "}", 1, true), body)
    end
    st = g:request("POST", "/publish?targets=all", { Authorization = "Bearer " .. g.key }, "1 2")
    assert.are.equal(400, st)
    st, _, _, j = g:request("POST", "/publish?targets=all&handler_id=x", { Authorization = "Bearer " .. g.key }, "1")
    assert.are.equal(400, st)
    assert.are.equal("handler_id", j.field)
    s:close()
  end)

  it("answers 413 for a body over --max-body", function()
    local big = '{"targets":["all"],"handler_id":0,"data":"' .. ("x"):rep(3000) .. '"}'
    local st, _, _, j = g:publish(big)
    assert.are.equal(413, st)
    assert.are.equal("body_too_large", j.error)
  end)

  it("answers 431 for headers over --max-header", function()
    local st, _, _, j = g:request("GET", "/healthz", { ["X-Big"] = ("y"):rep(1500) })
    assert.are.equal(431, st)
    assert.are.equal("headers_too_large", j.error)
  end)

  it("answers 404 for unknown paths and 405 for wrong methods", function()
    local st, _, _, j = g:request("GET", "/nope")
    assert.are.equal(404, st)
    assert.are.equal("not_found", j.error)
    local st2, h, _, j2 = g:request("GET", "/publish")
    assert.are.equal(405, st2)
    assert.are.equal("POST", h["allow"])
    assert.are.equal("method_not_allowed", j2.error)
    assert.are.equal(405, (g:request("POST", "/events", {}, "x")))
  end)

  it("answers 400 to malformed HTTP and keeps serving", function()
    local c = g:connect()
    c:send("THIS IS NOT HTTP\r\n\r\n")
    local line = c:receive("*l")
    c:close()
    assert.truthy(line == nil or line:match("^HTTP/1%.%d 4%d%d"))
    assert.are.equal(200, (g:request("GET", "/healthz")))
  end)

  it("keeps a publishing connection open for many publishes", function()
    local c = g:connect()
    local ids = {}
    for i = 1, 20 do
      local body = cjson.encode({ targets = { "all" }, handler_id = 0, data = i })
      c:send(g:build_request("POST", "/publish",
        { Authorization = "Bearer " .. g.key, ["Content-Type"] = "application/json" }, body))
      local st, _, b = T.read_response(c)
      assert.are.equal(200, st)
      ids[#ids + 1] = cjson.decode(b).id
    end
    c:close()
    assert.are.equal(20, #ids)
  end)
end)

describe("the small endpoints", function()
  local g
  setup(function() g = T.start() end)
  teardown(function() g:stop() end)

  it("/healthz answers ok", function()
    local st, _, _, j = g:request("GET", "/healthz")
    assert.are.equal(200, st)
    assert.are.equal("ok", j.status)
  end)

  it("/channels counts subscribers for publishers only", function()
    local a = g:stream("/events?token=ch1:crew")
    local b = g:stream("/events?token=ch2:crew")
    local st = g:request("GET", "/channels")
    assert.are.equal(401, st)
    local st2, _, _, j = g:request("GET", "/channels", { Authorization = "Bearer " .. g.key })
    assert.are.equal(200, st2)
    assert.are.equal(2, j.channels["role:crew"])
    assert.are.equal(1, j.channels["user:ch1"])
    local _, _, _, one = g:request("GET", "/channels?channel=role:crew", { Authorization = "Bearer " .. g.key })
    assert.are.equal(2, one.subscribers)
    a:close(); b:close()
    T.sleep(0.2)
    local _, _, _, after = g:request("GET", "/channels?channel=role:crew", { Authorization = "Bearer " .. g.key })
    assert.are.equal(0, after.subscribers)
  end)

  it("/auth/sse-token calls issue_token", function()
    local st, h, _, j = g:request("POST", "/auth/sse-token", { Authorization = "Bearer " .. g.key }, "{}")
    assert.are.equal(200, st)
    assert.are.equal("issued:user", j.token)
    assert.are.equal(60, j.expires_in)
    assert.are.equal("no-store", h["cache-control"])
    local st2, _, _, j2 = g:request("POST", "/auth/sse-token", {}, "{}")
    assert.are.equal(403, st2)
    assert.are.equal("needs the publish key", j2.message)
  end)

  it("/metrics speaks the Prometheus text format and its naming conventions", function()
    local s = g:stream("/events?token=m1:user")
    s:next(2)
    g:publish({ targets = { "all" }, handler_id = 0, data = 1 })
    s:message(2)
    local st, h, body = g:request("GET", "/metrics")
    assert.are.equal(200, st)
    assert.truthy(h["content-type"]:find("text/plain", 1, true))
    local types, helps, values = {}, {}, {}
    for line in body:gmatch("[^\n]+") do
      local name, typ = line:match("^# TYPE ([%w_]+) (%a+)$")
      if name then
        assert.is_nil(types[name], "TYPE twice for " .. name)
        types[name] = typ
      elseif line:match("^# HELP ") then
        helps[line:match("^# HELP ([%w_]+) ")] = true
      else
        local sample, v = line:match("^([%w_]+[^ ]*) ([%d%.e%+%-]+)$")
        assert.truthy(sample, "unparsable metrics line: " .. line)
        local base = sample:match("^([%w_]+)")
        local family = base:gsub("_bucket$", ""):gsub("_sum$", ""):gsub("_count$", "")
        local declared = types[base] and base or (types[family] and family)
        assert.truthy(declared, "sample before its TYPE: " .. sample)
        assert.truthy(helps[declared], "no HELP for " .. declared)
        -- the process_ names are Prometheus's own for descriptors
        assert.truthy(base:match("^tinysse_") or base == "process_open_fds" or base == "process_max_fds", base)
        values[sample] = tonumber(v)
      end
    end
    for name, typ in pairs(types) do
      assert.truthy(typ == "counter" or typ == "gauge" or typ == "histogram", name .. " " .. typ)
      if typ == "counter" then assert.truthy(name:match("_total$"), "counter without _total: " .. name) end
      if name:match("_total$") then assert.are.equal("counter", typ, name) end
      if typ == "histogram" then
        assert.truthy(values[name .. '_bucket{le="+Inf"}'], name)
        assert.are.equal(values[name .. "_count"], values[name .. '_bucket{le="+Inf"}'], name)
      end
    end
    assert.is_true(values["tinysse_messages_published_total"] >= 1)
    assert.is_true(values["tinysse_deliveries_total"] >= 1)
    assert.is_true(values["tinysse_publish_to_write_seconds_count"] >= 1)
    assert.truthy(values["tinysse_script_errors_total"])
    local open = 0
    for name, v in pairs(values) do
      if name:match('^tinysse_connections{worker="%d+"}$') then open = open + v end
    end
    assert.are.equal(1, open)
    s:close()
  end)

  it("/auth/sse-token is 404 when the script has no issue_token", function()
    local dir = T.tmpdir()
    T.write_file(dir .. "/s.lua", "return { validate_token = function() return 'u', 'r' end }")
    local g2 = T.start({ script = dir .. "/s.lua" })
    local st, _, _, j = g2:request("POST", "/auth/sse-token", {}, "{}")
    assert.are.equal(404, st)
    assert.are.equal("not_found", j.error)
    g2:stop()
  end)
end)

describe("the browser client files", function()
  it("are served from --assets with their content types, and 404 when missing", function()
    local dir = T.tmpdir()
    T.write_file(dir .. "/demo.html", "<!doctype html><title>demo</title>")
    T.write_file(dir .. "/tinysse.wasm", "\0asm\1\0\0\0")
    local g = T.start({ args = { "--assets", dir } })
    local st, h, body = g:request("GET", "/demo")
    assert.are.equal(200, st)
    assert.are.equal("text/html; charset=utf-8", h["content-type"])
    assert.are.equal("<!doctype html><title>demo</title>", body)
    st, h, body = g:request("GET", "/tinysse.wasm")
    assert.are.equal(200, st)
    assert.are.equal("application/wasm", h["content-type"])
    assert.are.equal(8, #body)
    local st2, _, _, j = g:request("GET", "/tinysse.js")
    assert.are.equal(404, st2)
    assert.are.equal("not_found", j.error)
    assert.are.equal(405, (g:request("POST", "/demo", {}, "x")))
    g:stop()
  end)
end)

describe("publishing is never open by default", function()
  it("makes and prints a key once when none is configured", function()
    local g = T.start({ key = false })
    local log = g:logtext()
    local key = log:match("publish key for this run is (%x+)")
    assert.truthy(key)
    local st = g:publish({ targets = { "all" }, handler_id = 0, data = 1 }, false)
    assert.are.equal(401, st)
    st = g:publish({ targets = { "all" }, handler_id = 0, data = 1 }, key)
    assert.are.equal(200, st)
    g:stop()
    local _, n = g:logtext():gsub(key, "")
    assert.are.equal(1, n)
  end)

  it("lets authorize_publish decide when the script has it", function()
    local dir = T.tmpdir()
    T.write_file(dir .. "/s.lua", [[
      return {
        validate_token = function() return "u", "r" end,
        authorize_publish = function(req)
          if req.headers["x-app"] == "yes" then return true end
          return false, "x-app header missing"
        end,
      }]])
    local g = T.start({ script = dir .. "/s.lua", key = false })
    assert.is_nil(g:logtext():find("publish key for this run", 1, true))
    local st, _, _, j = g:request("POST", "/publish", {}, '{"targets":["all"],"handler_id":0,"data":1}')
    assert.are.equal(403, st)
    assert.are.equal("x-app header missing", j.message)
    st = g:request("POST", "/publish", { ["X-App"] = "yes" }, '{"targets":["all"],"handler_id":0,"data":1}')
    assert.are.equal(200, st)
    g:stop()
  end)
end)
