-- Behind Debian's nginx with scripts/nginx-tinysse.conf: events arrive
-- promptly through the proxy (no buffering), publishes go through too.
local T = require "support"
local socket = require "socket"

describe("behind nginx", function()
  local g, nginx_pid, port, dir
  setup(function()
    g = T.start()
    dir = T.tmpdir()
    port = T.free_port()
    local snippet = T.read_file(T.root .. "/scripts/nginx-tinysse.conf")
    assert.truthy(snippet:find("proxy_buffering off", 1, true))
    snippet = snippet:gsub("server 127%.0%.0%.1:8080;", "server 127.0.0.1:" .. g.port .. ";")
                     :gsub("listen 80;", "listen 127.0.0.1:" .. port .. ";")
    T.write_file(dir .. "/tinysse.conf", snippet)
    T.write_file(dir .. "/nginx.conf", table.concat({
      "daemon off;", "worker_processes 1;", "pid " .. dir .. "/nginx.pid;",
      "error_log " .. dir .. "/error.log;",
      "events { worker_connections 256; }",
      "http {",
      "  access_log off;",
      "  client_body_temp_path " .. dir .. "/body; proxy_temp_path " .. dir .. "/proxy;",
      "  fastcgi_temp_path " .. dir .. "/fcgi; uwsgi_temp_path " .. dir .. "/uwsgi; scgi_temp_path " .. dir .. "/scgi;",
      "  include " .. dir .. "/tinysse.conf;",
      "}", "" }, "\n"))
    nginx_pid = T.sh("sh -c 'exec nginx -p " .. dir .. " -e " .. dir .. "/error.log -c " .. dir ..
                     "/nginx.conf >/dev/null 2>&1 & echo $!'"):gsub("%s+$", "")
    for _ = 1, 100 do
      local c = socket.tcp()
      c:settimeout(0.1)
      if c:connect("127.0.0.1", port) then c:close() break end
      socket.sleep(0.05)
    end
  end)
  teardown(function()
    if nginx_pid then T.sh("kill " .. nginx_pid) end
    g:stop()
  end)

  -- the gateway object, pointed at nginx's port
  local function via_nginx()
    return setmetatable({ port = port, key = g.key }, getmetatable(g))
  end

  it("streams through without buffering: each event arrives promptly", function()
    local p = via_nginx()
    local s = p:stream("/events?token=px1:user")
    assert.are.equal(200, s.status, s.body)
    assert.are.equal("text/event-stream", s.headers["content-type"])
    s:next(3)
    for i = 1, 5 do
      local t0 = socket.gettime()
      local st = p:publish({ targets = { "user:px1" }, handler_id = 0, data = { n = i } })
      assert.are.equal(200, st)
      local ev = s:message(2)
      assert.truthy(ev, "event " .. i .. " did not come through nginx")
      assert.are.equal(i, ev.json.data.n)
      assert.is_true(socket.gettime() - t0 < 0.5, "event " .. i .. " was held back")
    end
    s:close()
  end)

  it("passes resume ids and errors through", function()
    local p = via_nginx()
    local denied = p:stream("/events?token=bad%20token")
    assert.are.equal(401, denied.status)
    local _, _, _, j = p:publish({ targets = { "user:px2" }, handler_id = 0, data = "missed" })
    local s = p:stream("/events?token=px2:user", { ["Last-Event-ID"] = j.id:gsub("%-(%d+)$", function(n) return "-" .. (n - 1) end) })
    local ev = s:message(2)
    assert.are.equal("missed", ev.json.data)
    s:close()
  end)
end)
