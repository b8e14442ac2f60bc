-- scripts/backend_auth.lua: tokens checked by the app's own endpoint, with
-- a cache. The standalone module has no tinysse.http, so a fake one records
-- each call and answers from a function; tinysse.now and tinysse.log are
-- stubbed too, to move the clock and read the warnings. The last block
-- puts the fake in front of the real test backend (spec/fault/backend.c).
local h = dofile((os.getenv("TINYSSE_ROOT") or ".") .. "/spec/scripts/helper.lua")
local tinysse = h.tinysse
local cjson = h.cjson

local URL = "http://127.0.0.1:3000/auth"
local T0 = 1800000000.25

local function ok_answer(user, role, extra)
  local a = { user = user, role = role, channels = { "user:" .. user, "all" }, expires_in = 3600 }
  for k, v in pairs(extra or {}) do a[k] = v end
  for k, v in pairs(extra or {}) do if v == false then a[k] = nil end end
  return 200, cjson.encode(a), { ["content-type"] = "application/json" }
end

describe("backend_auth.lua", function()
  local real = { http = tinysse.http, now = tinysse.now, log = tinysse.log }
  local calls, logs, clock, answer

  local function load(env)
    local e = { AUTH_URL = URL }
    for k, v in pairs(env or {}) do e[k] = v or nil end
    return h.load_script("backend_auth", e)
  end

  before_each(function()
    calls, logs, clock = {}, {}, T0
    answer = function(call) return ok_answer("42", "admin") end
    tinysse.http = function(call)
      calls[#calls + 1] = call
      return answer(call)
    end
    tinysse.now = function() return clock end
    tinysse.log = function(level, msg) logs[#logs + 1] = { level, msg } end
  end)
  after_each(function()
    for k, v in pairs(real) do tinysse[k] = v end
  end)

  it("refuses to load without AUTH_URL or with bad settings", function()
    assert.matches("set AUTH_URL", h.error_of(h.load_script, "backend_auth", {}))
    assert.matches("set AUTH_URL", h.error_of(h.load_script, "backend_auth", { AUTH_URL = "" }))
    assert.matches("AUTH_URL must be an http", h.error_of(load, { AUTH_URL = "127.0.0.1:3000/auth" }))
    assert.matches("AUTH_TIMEOUT must be", h.error_of(load, { AUTH_TIMEOUT = "0" }))
    assert.matches("AUTH_CACHE_SECONDS must be", h.error_of(load, { AUTH_CACHE_SECONDS = "-1" }))
    assert.matches("AUTH_CACHE_MAX must be a whole number", h.error_of(load, { AUTH_CACHE_MAX = "1.5" }))
    assert.matches("AUTH_COOKIE must be a cookie name", h.error_of(load, { AUTH_COOKIE = "a b" }))
  end)

  it("accepts what the backend accepts: user, role, expiry, channels", function()
    local hooks = load()
    local req = h.req()
    assert.are.same({ "42", "admin", math.floor(T0 + 3600) }, { hooks.validate_token("tok-1", req) })
    assert.are.same({ { method = "GET", url = URL, timeout = 2, headers = { authorization = "Bearer tok-1" } } }, calls)
    assert.are.same({ "user:42", "all" }, hooks.channels("42", "admin", req))
    -- another request of the same user finds them through the user id
    assert.are.same({ "user:42", "all" }, hooks.channels("42", "admin", h.req()))
    assert.are.same({ "all", "user:7" }, hooks.channels("7", "", h.req()))
    load({ AUTH_TIMEOUT = "0.5" }).validate_token("tok-1", h.req())
    assert.are.equal(0.5, calls[2].timeout)
  end)

  it("answers a repeat from the cache, without a call", function()
    local hooks = load()
    hooks.validate_token("tok-1", h.req())
    clock = T0 + 29
    assert.are.same({ "42", "admin", math.floor(T0 + 3600) }, { hooks.validate_token("tok-1", h.req()) })
    assert.are.equal(1, #calls)
    hooks.validate_token("tok-2", h.req()) -- another token is another entry
    assert.are.equal(2, #calls)
    clock = T0 + 31 -- past AUTH_CACHE_SECONDS (30)
    hooks.validate_token("tok-1", h.req())
    assert.are.equal(3, #calls)
  end)

  it("never caches an answer past its expires_in", function()
    local hooks = load({ AUTH_CACHE_SECONDS = "600" })
    answer = function() return ok_answer("9", "viewer", { expires_in = 10 }) end
    assert.are.same({ "9", "viewer", math.floor(T0 + 10) }, { hooks.validate_token("short", h.req()) })
    clock = T0 + 9
    hooks.validate_token("short", h.req())
    assert.are.equal(1, #calls)
    clock = T0 + 10.5
    hooks.validate_token("short", h.req())
    assert.are.equal(2, #calls)
    -- no expires_in: no expiry, cached for AUTH_CACHE_SECONDS
    answer = function() return ok_answer("9", "viewer", { expires_in = false }) end
    assert.are.same({ "9", "viewer" }, { hooks.validate_token("forever", h.req()) })
  end)

  it("calls every time with AUTH_CACHE_SECONDS=0", function()
    local hooks = load({ AUTH_CACHE_SECONDS = "0" })
    for _ = 1, 3 do hooks.validate_token("tok-1", h.req()) end
    answer = function() return 401, "" end
    for _ = 1, 2 do hooks.validate_token("tok-1", h.req()) end
    assert.are.equal(5, #calls)
  end)

  it("rejects what the backend refuses, and remembers it for 5 seconds", function()
    local hooks = load()
    answer = function() return 401, '{"error":"invalid token"}' end
    assert.are.same({ nil, "rejected by the backend: invalid token" }, { hooks.validate_token("bad", h.req()) })
    clock = T0 + 4
    assert.are.same({ nil, "rejected by the backend: invalid token" }, { hooks.validate_token("bad", h.req()) })
    assert.are.equal(1, #calls)
    clock = T0 + 5.5
    answer = function() return 403, "nope" end -- no JSON error field
    assert.are.same({ nil, "rejected by the backend" }, { hooks.validate_token("bad", h.req()) })
    assert.are.equal(2, #calls)
    assert.are.same({}, logs) -- a refusal is not a fault
  end)

  it("says the backend is unavailable, and warns, when it cannot answer", function()
    local hooks = load()
    local cases = {
      { function() return nil, "timeout" end, "auth backend unavailable: timeout" },
      { function() return nil, "connect_failed" end, "auth backend unavailable: connect_failed" },
      { function() return 502, "<html>bad gateway</html>" end, "auth backend unavailable: status 502" },
      { function() return 200, "\22\3\1 not json" end, "auth backend unavailable: the answer is not JSON" },
      { function() return 200, '{"role":"admin"}' end, "auth backend unavailable: the answer has no usable user" },
      { function() return 200, '{"user":"1","role":7}' end, "auth backend unavailable: the answer's role is not a string" },
    }
    for i, c in ipairs(cases) do
      answer = c[1]
      clock = T0 + 2 * i -- past the once-a-second limit on warnings
      assert.are.same({ nil, c[2] }, { hooks.validate_token("tok-" .. i, h.req()) }, "case " .. i)
      assert.are.same({ "warn", "backend_auth.lua: " .. c[2] }, logs[#logs], "case " .. i)
    end
    -- nothing of that is cached: the next try asks again
    answer = function() return ok_answer("1", "a") end
    assert.are.equal("1", (hooks.validate_token("tok-1", h.req())))
  end)

  it("warns at most once a second, counting what it kept quiet", function()
    local hooks = load()
    answer = function() return nil, "timeout" end
    for i = 1, 5 do hooks.validate_token("t" .. i, h.req()) end
    assert.are.equal(1, #logs)
    clock = T0 + 1.5
    hooks.validate_token("t6", h.req())
    assert.are.equal(2, #logs)
    assert.matches("(and 4 more since the last warning)", logs[2][2], 1, true)
  end)

  it("keeps at most AUTH_CACHE_MAX answers, dropping the oldest", function()
    local hooks = load({ AUTH_CACHE_MAX = "2" })
    for _, t in ipairs({ "a", "b", "c" }) do hooks.validate_token(t, h.req()) end
    assert.are.equal(3, #calls)
    hooks.validate_token("c", h.req())
    hooks.validate_token("b", h.req())
    assert.are.equal(3, #calls) -- b and c are still there
    hooks.validate_token("a", h.req())
    assert.are.equal(4, #calls) -- a was dropped first
    -- seven tokens in turn through two places: never a hit
    for i = 1, 200 do hooks.validate_token("x" .. (i % 7), h.req()) end
    assert.are.equal(204, #calls)
  end)

  it("sends the AUTH_COOKIE cookie along, and caches by token and cookie", function()
    local hooks = load({ AUTH_COOKIE = "session" })
    hooks.validate_token("tok", h.req({ cookies = { session = "s1", other = "x" } }))
    assert.are.same({ authorization = "Bearer tok", cookie = "session=s1" }, calls[1].headers)
    hooks.validate_token("tok", h.req({ cookies = { session = "s2" } }))
    assert.are.equal(2, #calls)
    -- a cookie alone will do (the gateway passes no empty token today, but a
    -- script should not depend on that)
    assert.are.equal("42", (hooks.validate_token("", h.req({ cookies = { session = "s3" } }))))
    assert.are.same({ cookie = "session=s3" }, calls[3].headers)
    -- without the setting no cookie goes out
    load().validate_token("tok", h.req({ cookies = { session = "s1" } }))
    assert.are.same({ authorization = "Bearer tok" }, calls[4].headers)
  end)

  it("turns away empty and malformed tokens without a call", function()
    local hooks = load()
    assert.are.same({ nil, "no token" }, { hooks.validate_token("", h.req()) })
    assert.are.same({ nil, "no token" }, { hooks.validate_token(nil, h.req()) })
    assert.are.same({ nil, "malformed token" }, { hooks.validate_token("a\r\nX-Evil: 1", h.req()) })
    assert.are.same({ nil, "malformed token" }, { hooks.validate_token(("t"):rep(9000), h.req()) })
    assert.are.equal(0, #calls)
  end)

  it("falls back to all and user:<id> when the answer has no channels", function()
    local hooks = load()
    answer = function() return ok_answer("5", "user", { channels = false }) end
    local req = h.req()
    hooks.validate_token("tok", req)
    assert.are.same({ "all", "user:5" }, hooks.channels("5", "user", req))
    -- channels that could not be channel names are dropped
    answer = function() return ok_answer("6", "user", { channels = { "ok", "", "bad\1", ("x"):rep(201), 3 } }) end
    req = h.req()
    hooks.validate_token("tok2", req)
    assert.are.same({ "ok" }, hooks.channels("6", "user", req))
  end)

  it("keeps tokens out of its log lines and reasons", function()
    local hooks = load()
    answer = function() return nil, "timeout" end
    local _, why = hooks.validate_token("secret-token-123", h.req())
    for _, l in ipairs(logs) do assert.is_nil(l[2]:find("secret-token-123", 1, true)) end
    assert.is_nil(why:find("secret-token-123", 1, true))
  end)
end)

-- Against spec/fault/backend.c's /auth, /garbage and /hang, reached by a
-- small blocking HTTP client standing in for tinysse.http.
local BACKEND = os.getenv("TINYSSE_BACKEND")
local has_socket, socket = pcall(require, "socket")
local maybe = (BACKEND and has_socket) and describe or pending

maybe("backend_auth.lua against the test backend", function()
  local real_http = tinysse.http
  local port, pid, dir

  -- Enough HTTP/1.1 for these answers: Connection: close, body until EOF.
  local function http(call)
    local path = call.url:match("^http://127%.0%.0%.1:%d+(/.*)$")
    local c = socket.tcp()
    c:settimeout(call.timeout)
    if not c:connect("127.0.0.1", port) then return nil, "connect_failed" end
    local head = { call.method .. " " .. path .. " HTTP/1.1", "Host: 127.0.0.1", "Connection: close" }
    for k, v in pairs(call.headers or {}) do head[#head + 1] = k .. ": " .. v end
    c:send(table.concat(head, "\r\n") .. "\r\n\r\n")
    local data, err, partial = c:receive("*a")
    c:close()
    if not data and err == "timeout" then return nil, "timeout" end
    data = data or partial
    local status, body = data:match("^HTTP/1%.%d (%d%d%d) .-\r\n\r\n(.*)$")
    if not status then return nil, "bad_response" end
    return tonumber(status), body, {}
  end

  setup(function()
    local p = io.popen("mktemp -d /tmp/tinysse-backend-spec.XXXXXX")
    dir = (p:read("a"):gsub("%s+$", ""))
    p:close()
    -- without the sanitizer runtime this spec's interpreter may preload: the
    -- backend has its own
    local p = io.popen(("env -u LD_PRELOAD %s --port 0 --max-seconds 120 > %s/out 2>&1 & echo $!"):format(BACKEND, dir))
    pid = p:read("a"):match("%d+")
    p:close()
    for _ = 1, 100 do
      local f = io.open(dir .. "/out")
      port = f and f:read("a"):match("port=(%d+)")
      if f then f:close() end
      if port then break end
      socket.sleep(0.05)
    end
    assert(port, "the test backend did not start")
  end)
  teardown(function()
    if pid then os.execute("kill -TERM " .. pid .. " 2>/dev/null") end
    if dir then os.execute("rm -rf " .. dir) end
  end)
  before_each(function() tinysse.http = http end)
  after_each(function() tinysse.http = real_http end)

  local function load(path, env)
    env = env or {}
    env.AUTH_URL = "http://127.0.0.1:" .. port .. path
    return h.load_script("backend_auth", env)
  end

  local function stats()
    local _, body = http({ method = "GET", url = "http://127.0.0.1:" .. port .. "/stats", timeout = 2 })
    return cjson.decode(body)
  end

  it("accepts, refuses and caches as the backend says", function()
    local hooks = load("/auth?expires_in=60")
    local before = stats().by_path["/auth"] or 0
    local user, role, exp = hooks.validate_token("user:42:admin", h.req())
    assert.are.same({ "42", "admin" }, { user, role })
    assert.is_true(math.abs(exp - (tinysse.time() + 60)) <= 2)
    local req = h.req()
    hooks.validate_token("user:42:admin", req)
    assert.are.same({ "user:42", "all" }, hooks.channels("42", "admin", req))
    assert.are.same({ nil, "rejected by the backend: denied" }, { hooks.validate_token("deny", h.req()) })
    assert.are.same({ nil, "rejected by the backend: invalid token" }, { hooks.validate_token("junk", h.req()) })
    hooks.validate_token("deny", h.req())
    assert.are.equal(before + 3, stats().by_path["/auth"]) -- the repeats came from the cache
  end)

  it("sends the session cookie the backend reads", function()
    local hooks = load("/auth", { AUTH_COOKIE = "session" })
    assert.are.equal("7", (hooks.validate_token("", h.req({ cookies = { session = "user:7:viewer" } }))))
  end)

  it("calls garbage and silence unavailable", function()
    local logs = {}
    local real_log = tinysse.log
    tinysse.log = function(_, msg) logs[#logs + 1] = msg end
    local ok, err = pcall(function()
      assert.are.same({ nil, "auth backend unavailable: bad_response" },
        { load("/garbage").validate_token("user:1:a", h.req()) })
      local t = socket.gettime()
      assert.are.same({ nil, "auth backend unavailable: timeout" },
        { load("/hang", { AUTH_TIMEOUT = "0.3" }).validate_token("user:1:a", h.req()) })
      assert.is_true(socket.gettime() - t < 2)
    end)
    tinysse.log = real_log
    assert(ok, err)
    assert.are.equal(2, #logs)
  end)
end)
