-- on_connect / on_disconnect with tinysse.publish and tinysse.count from
-- inside hooks, and the slow-client bound.
local T = require "support"

-- The next presence event about `user` (events about others, such as a
-- departure from the previous test seen late, are skipped).
local function about(watch, user, timeout)
  local deadline = require("socket").gettime() + (timeout or 5)
  while true do
    local ev = watch:message(math.max(0, deadline - require("socket").gettime()))
    if not ev then return nil end
    local d = ev.json and ev.json.data
    if d and (d.joined == user or d.left == user) then return ev end
  end
end

describe("connection hooks", function()
  local g
  setup(function()
    g = T.start({ script = T.root .. "/spec/e2e/scripts/presence.lua",
                  args = { "--max-queue", "65536", "--max-body", "2000000" } })
  end)
  teardown(function() g:stop() end)

  it("run on connect and disconnect and may publish", function()
    local watch = g:stream("/events?token=w1:watcher&watch=1")
    watch:next(2)
    local a = g:stream("/events?token=alice:crew")
    local ev = watch:message(5)
    assert.are.equal("presence.joined", ev.event)
    assert.are.equal("alice", ev.json.data.joined)
    assert.are.equal(1, ev.json.data.count)
    assert.are.same({ "all", "role:crew", "user:alice" }, ev.json.data.channels)
    local b = g:stream("/events?token=bob:crew")
    ev = watch:message(5)
    assert.are.equal("bob", ev.json.data.joined)
    assert.are.equal(2, ev.json.data.count)
    a:close()
    ev = watch:message(5)
    assert.are.equal("presence.left", ev.event)
    assert.are.same({ left = "alice", reason = "closed" }, ev.json.data)
    b:close()
    watch:close()
  end)

  it("closes a client that stops reading, with reason slow, and spares the others", function()
    local watch = g:stream("/events?token=w2:watcher&watch=1")
    watch:next(2)
    local slow = g:stream("/events?token=sloth:crew")
    assert.are.equal("sloth", about(watch, "sloth").json.data.joined)
    -- the fast client is curl, reading as fast as it can
    local out = T.tmpdir() .. "/fast.out"
    local pid = T.sh(string.format("curl -sN 'http://127.0.0.1:%d/events?token=hare:crew' > %s 2>/dev/null & echo $!",
                                   g.port, out)):gsub("%s+$", "")
    assert.are.equal("hare", about(watch, "hare").json.data.joined)
    -- ~1 MB per publish; the slow client never reads, so once the kernel's
    -- socket buffers are full its queue passes 64 KiB.
    local batch = {}
    for i = 1, 500 do
      batch[i] = { targets = { "role:crew" }, handler_id = 0, data = ("p"):rep(2000) }
    end
    local body = T.json.encode(batch)
    local left, published = nil, 0
    for _ = 1, 40 do
      assert.are.equal(200, (g:publish(body)))
      published = published + 500
      left = about(watch, "sloth", 0.1)
      if left then break end
    end
    assert.truthy(left, "the slow client was never closed")
    assert.are.same({ left = "sloth", reason = "slow" }, left.json.data)
    local _, _, metrics = g:request("GET", "/metrics")
    assert.is_true(tonumber(metrics:match("\ntinysse_slow_disconnects_total (%d+)")) >= 1)
    -- the fast client got every message and is still connected
    g:publish({ targets = { "user:hare" }, handler_id = 0, data = "after" })
    local text
    for _ = 1, 50 do
      T.sleep(0.1)
      text = T.read_file(out)
      if text:find('"data":"after"', 1, true) then break end
    end
    local _, ids = text:gsub("\nid: ", "")
    assert.are.equal(published + 1, ids, "fast client output: " .. #text .. " bytes: " .. text:sub(1, 300))
    assert.is_nil(watch:message(0.2), "nobody else left")
    T.sh("kill " .. pid)
    slow:close(); watch:close()
  end)
end)
