-- Script containment, reload, --check and start-up errors.
local T = require "support"

describe("a misbehaving hook", function()
  local g
  setup(function()
    g = T.start({ args = { "--hook-timeout", "0.2", "--script-memory", "33554432" } })
  end)
  teardown(function() g:stop() end)

  local cases = {
    { "boom", "validate_token exploded on purpose" },
    { "loop", "time budget" },
    { "hog", "memory cap" },
    { "badtype", "validate_token returned table" },
    { "norole", "role string" },
    { "badchannels:user", "channels returned string" },
  }
  for _, c in ipairs(cases) do
    it("fails only its request (" .. c[1] .. ") with a 500 JSON error", function()
      local s = g:stream("/events?token=" .. c[1])
      assert.are.equal(500, s.status)
      assert.are.equal("script", s.json.error)
      assert.truthy(s.json.message:find(c[2], 1, true), s.json.message)
      -- the gateway keeps serving
      local ok = g:stream("/events?token=fine:user")
      assert.are.equal(200, ok.status)
      ok:close()
    end)
  end

  it("logs the error with the script's file and line", function()
    local log = g:logtext()
    assert.truthy(log:find("event=script_error", 1, true))
    assert.truthy(log:find("test.lua:%d+: validate_token exploded on purpose"))
  end)

  it("counts script errors, timeouts and memory errors in /metrics", function()
    local _, _, body = g:request("GET", "/metrics")
    local function metric(name) return tonumber(body:match("\n" .. name .. " (%d+)")) end
    assert.is_true(metric("tinysse_script_errors_total") >= 6)
    assert.is_true(metric("tinysse_script_timeouts_total") >= 1)
    assert.is_true(metric("tinysse_script_memory_errors_total") >= 1)
    assert.is_true(metric("tinysse_script_bad_returns_total") >= 3)
  end)
end)

describe("SIGHUP", function()
  it("reloads the script, and keeps the old one when the new one is broken", function()
    local dir = T.tmpdir()
    local path = dir .. "/s.lua"
    T.write_file(path, "return { validate_token = function(t) return t, 'v1' end }")
    local g = T.start({ script = path })
    local s = g:stream("/events?token=live1")
    assert.are.equal(200, s.status)
    s:next(2)

    T.write_file(path, "return { validate_token = function(t) return nil, 'v2 says no' end, on_connect = function() end }")
    g:signal("HUP")
    T.sleep(0.5)
    local s2 = g:stream("/events?token=x")
    assert.are.equal(401, s2.status)
    assert.are.equal("v2 says no", s2.json.message)
    assert.truthy(g:logtext():find("event=script_reloaded worker=0 .* hooks_added=on_connect hooks_removed=none"))

    T.write_file(path, "return { validate_token = function( end }")
    g:signal("HUP")
    T.sleep(0.5)
    local s3 = g:stream("/events?token=x")
    assert.are.equal(401, s3.status)
    assert.are.equal("v2 says no", s3.json.message)
    assert.truthy(g:logtext():find("event=reload_failed", 1, true))

    -- the stream opened before both reloads is still live
    g:publish({ targets = { "all" }, handler_id = 0, data = "still here" })
    local ev = s:message(2)
    assert.are.equal("still here", ev.json.data)
    s:close()
    assert.is_true(g:stop())
  end)
end)

describe("SIGHUP with a changed config table", function()
  it("applies what can change live, reports the rest, and keeps every stream", function()
    local dir = T.tmpdir()
    local path = dir .. "/s.lua"
    T.write_file(path, "return { config = { retry = 1111 }, validate_token = function(t) return t, 'r' end }")
    local g = T.start({ script = path })
    local live = g:stream("/events?token=keep")
    assert.are.equal(1111, live:next(2).retry)
    T.write_file(path, "return { config = { retry = 2222, buffer = 5 }, validate_token = function(t) return t, 'r' end }")
    g:signal("HUP")
    T.sleep(0.5)
    assert.truthy(g:logtext():find("event=config_reloaded changed=retry needs_restart=buffer", 1, true), g:logtext())
    local fresh = g:stream("/events?token=new")
    assert.are.equal(2222, fresh:next(2).retry)
    g:publish({ targets = { "all" }, handler_id = 0, data = "both" })
    assert.are.equal("both", live:message(2).json.data)
    assert.are.equal("both", fresh:message(2).json.data)
    live:close(); fresh:close()
    g:stop()
  end)
end)

describe("start-up", function()
  local function run(args)
    local out = T.sh(T.bin .. " " .. args .. " 2>&1; echo \"status=$?\"")
    return out, tonumber(out:match("status=(%d+)"))
  end

  it("--check accepts a good script and rejects a broken one", function()
    local out, st = run("--check --script " .. T.root .. "/spec/e2e/scripts/test.lua")
    assert.are.equal(0, st, out)
    assert.truthy(out:find("validate_token", 1, true))
    local dir = T.tmpdir()
    T.write_file(dir .. "/bad.lua", "return { validate_token = 42 }")
    out, st = run("--check --script " .. dir .. "/bad.lua")
    assert.are.equal(1, st)
    assert.truthy(out:find("hook 'validate_token' must be a function", 1, true), out)
    T.write_file(dir .. "/syntax.lua", "return {")
    out, st = run("--check --script " .. dir .. "/syntax.lua")
    assert.are.equal(1, st)
    assert.truthy(out:find("syntax.lua:1:", 1, true), out)
    -- a script that loads with an option that does not: not "ok"
    out, st = run("--check --script " .. T.root .. "/spec/e2e/scripts/test.lua --trusted-proxy 10.0.0.1/8")
    assert.are.equal(1, st)
    assert.is_nil(out:find("ok:", 1, true), out)
    assert.truthy(out:find("--trusted-proxy", 1, true), out)
  end)

  it("exits 2 with a one-line error for bad options", function()
    for _, args in ipairs({ "--nope", "--buffer 0", "--buffer abc", "--listen nowhere",
                            "--script /does/not/exist.lua", "--heartbeat" }) do
      local out, st = run(args .. " --listen 127.0.0.1:" .. T.free_port())
      if args == "--listen nowhere" then out, st = run("--listen nowhere") end
      assert.are.equal(2, st, args .. ": " .. out)
      assert.truthy(out:match("^tinysse: [^\n]+\n"), args .. ": " .. out)
    end
  end)

  it("lists every option of --help in the README's command-line table", function()
    local help = run("--help")
    local table_ = T.read_file(T.root .. "/README.md"):match("\n## Command line\n(.-)\n## ")
    local n = 0
    for name in help:gmatch("\n  %-%-([%w%-]+)") do
      n = n + 1
      assert.truthy(table_:find("`%-%-" .. name:gsub("%-", "%%-") .. "[ `]"), "--" .. name .. " is not in the README")
    end
    assert.is_true(n > 20, help)
  end)

  it("takes options from the script's config table, the command line winning", function()
    local dir = T.tmpdir()
    T.write_file(dir .. "/s.lua", [[
      return { config = { retry = 1234, endpoint = "/sse" },
               validate_token = function(t) return t, "r" end }]])
    local g = T.start({ script = dir .. "/s.lua", args = { "--retry", "777" } })
    local s = g:stream("/sse?token=a")
    assert.are.equal(200, s.status)
    assert.are.equal(777, s:next(2).retry)
    s:close()
    g:stop()
  end)
end)
