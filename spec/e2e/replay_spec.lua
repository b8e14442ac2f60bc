-- Replay: resume from Last-Event-ID or ?lastEventId=, exactly the missed
-- matching messages, no gap or duplicate at the seam, and tinysse.reset
-- when the id is too old or unknown.
local T = require "support"
local socket = require "socket"

local function publish_n(g, n, targets, from)
  local ids = {}
  for i = 1, n do
    local st, _, body, j = g:publish({ targets = targets, handler_id = 1, data = { n = from + i - 1 } })
    assert.are.equal(200, st, body)
    ids[#ids + 1] = j.id
  end
  return ids
end

local function seqs(events)
  local out = {}
  for _, e in ipairs(events) do
    out[#out + 1] = e.event == "tinysse.reset" and "reset" or (e.json and e.json.data and e.json.data.n)
  end
  return out
end

describe("replay", function()
  local g
  setup(function() g = T.start({ args = { "--buffer", "20" } }) end)
  teardown(function() g:stop() end)

  it("resumes after Last-Event-ID with exactly the missed matching messages", function()
    local first = publish_n(g, 3, { "role:r1" }, 1)
    publish_n(g, 2, { "role:other" }, 100) -- not for this client
    publish_n(g, 3, { "role:r1" }, 4)
    local s = g:stream("/events?token=c1:r1", { ["Last-Event-ID"] = first[2] })
    assert.are.equal(200, s.status)
    local got = s:drain(0.4)
    assert.are.same({ 3, 4, 5, 6 }, seqs(got))
    s:close()
  end)

  it("accepts ?lastEventId= and lets the header win over it", function()
    local ids = publish_n(g, 4, { "role:r2" }, 1)
    local q = g:stream("/events?token=c2:r2&lastEventId=" .. ids[2])
    assert.are.same({ 3, 4 }, seqs(q:drain(0.4)))
    q:close()
    local h = g:stream("/events?token=c2:r2&lastEventId=" .. ids[1], { ["Last-Event-ID"] = ids[3] })
    assert.are.same({ 4 }, seqs(h:drain(0.4)))
    h:close()
  end)

  it("continues live after the replay with no gap and no duplicate", function()
    local ids = publish_n(g, 2, { "role:r3" }, 1)
    local s = g:stream("/events?token=c3:r3", { ["Last-Event-ID"] = ids[1] })
    publish_n(g, 2, { "role:r3" }, 3)
    assert.are.same({ 2, 3, 4 }, seqs(s:drain(0.4)))
    s:close()
  end)

  it("sends tinysse.reset naming the oldest id when the resume id is too old", function()
    local old = publish_n(g, 1, { "role:r4" }, 1)
    publish_n(g, 25, { "role:r4" }, 2) -- buffer is 20
    local s = g:stream("/events?token=c4:r4", { ["Last-Event-ID"] = old[1] })
    local ev = s:message(2)
    assert.are.equal("tinysse.reset", ev.event)
    assert.are.equal("reset", ev.json.type)
    assert.are.equal("too_old", ev.json.reason)
    assert.truthy(ev.json.oldest_id:match("^%d+%-%d+$"))
    assert.truthy(ev.id, "the reset carries the current position as its id")
    -- nothing replayed after a reset; live continues
    publish_n(g, 1, { "role:r4" }, 99)
    local live = s:drain(0.4)
    assert.are.same({ 99 }, seqs(live))
    s:close()
  end)

  it("resumes a quiet channel without a reset however much other channels sent", function()
    local quiet = publish_n(g, 1, { "user:q1" }, 1)
    publish_n(g, 60, { "role:busy" }, 100) -- three times --buffer, none for q1
    local s = g:stream("/events?token=q1:rq", { ["Last-Event-ID"] = quiet[1] })
    assert.are.equal(200, s.status)
    assert.are.same({}, seqs(s:drain(0.4)), "no reset, nothing to replay")
    publish_n(g, 1, { "user:q1" }, 2)
    assert.are.same({ 2 }, seqs(s:drain(0.4)))
    s:close()
    -- a client whose own channel lost a message (more than --buffer and
    -- --channel-history sent to it since its id) still gets the reset
    local seen = publish_n(g, 1, { "user:q2" }, 1)
    publish_n(g, 30, { "user:q2" }, 2)
    local r = g:stream("/events?token=q2:rq", { ["Last-Event-ID"] = seen[1] })
    local ev = r:message(2)
    assert.are.equal("tinysse.reset", ev.event)
    assert.are.equal("too_old", ev.json.reason)
    r:close()
  end)

  it("keeps a quiet channel's last messages through 2,000 busy ones and replays them", function()
    local before = publish_n(g, 1, { "user:q3" }, 1)
    publish_n(g, 1, { "user:q3" }, 2)
    local busy = {}
    for i = 1, 500 do busy[i] = { targets = { "role:busy" }, data = { n = 1000 + i } } end
    for _ = 1, 4 do
      local st, _, body = g:publish(busy)
      assert.are.equal(200, st, body)
    end
    local s = g:stream("/events?token=q3:rq", { ["Last-Event-ID"] = before[1] })
    assert.are.same({ 2 }, seqs(s:drain(0.4)))
    s:close()
    assert.is_true(g:metric("tinysse_history_messages") >= 21)
    assert.is_true(g:metric('tinysse_history_evictions_total{cause="count"}') >= 1900)
  end)

  it("sends tinysse.reset for an unknown or malformed id", function()
    for _, id in ipairs({ "1-1", "garbage", "99999999999999-5" }) do
      local s = g:stream("/events?token=c5:r5", { ["Last-Event-ID"] = id })
      local ev = s:message(2)
      assert.are.equal("tinysse.reset", ev.event, id)
      assert.are.equal("unknown", ev.json.reason)
      s:close()
    end
  end)

  it("resumes from the reset's own id without another reset", function()
    local s = g:stream("/events?token=c6:r6", { ["Last-Event-ID"] = "garbage" })
    local reset = s:message(2)
    s:close()
    publish_n(g, 2, { "role:r6" }, 1)
    local again = g:stream("/events?token=c6:r6", { ["Last-Event-ID"] = reset.id })
    assert.are.same({ 1, 2 }, seqs(again:drain(0.4)))
    again:close()
  end)
end)

describe("the seam between replay and live", function()
  local g
  setup(function() g = T.start({ args = { "--buffer", "1000" } }) end)
  teardown(function() g:stop() end)

  it("has no gap or duplicate at the seam while publishes race the connect", function()
    -- A background publisher runs while clients connect with a resume id.
    local ids = publish_n(g, 1, { "role:seam" }, 0)
    local url = string.format("http://127.0.0.1:%d/publish", g.port)
    local file = T.tmpdir() .. "/publisher.sh"
    T.write_file(file, table.concat({
      "for i in $(seq 1 150); do",
      "  curl -s -o /dev/null -H 'Authorization: Bearer " .. g.key .. "' \\",
      "    -d '{\"targets\":[\"role:seam\"],\"handler_id\":0,\"data\":{\"n\":'$i'}}' " .. url,
      "done", "" }, "\n"))
    local bg = io.popen("sh " .. file .. " >/dev/null 2>&1 & echo $!")
    local pid = bg:read("l"); bg:close()
    local streams = {}
    for i = 1, 10 do
      T.sleep(0.05)
      streams[i] = g:stream("/events?token=seam" .. i .. ":seam", { ["Last-Event-ID"] = ids[1] })
    end
    -- wait for the publisher to finish
    for _ = 1, 1200 do
      if T.sh("kill -0 " .. pid .. " 2>/dev/null && echo y") == "" then break end
      T.sleep(0.05)
    end
    for i, s in ipairs(streams) do
      local got = seqs(s:drain(0.5))
      assert.are.equal(150, #got, "stream " .. i .. " got " .. #got .. ": " .. table.concat(got, ","))
      for k = 1, 150 do assert.are.equal(k, got[k], "stream " .. i .. " at " .. k) end
      s:close()
    end
  end)

end)

describe("replay across a restart", function()
  it("answers an id from before the restart with tinysse.reset", function()
    local g = T.start()
    local _, _, _, j = g:publish({ targets = { "all" }, handler_id = 0, data = 1 })
    local port = g.port
    assert.is_true(g:stop())
    T.sleep(0.05) -- ids carry the start time in ms
    local g2 = T.start({ port = port })
    local s = g2:stream("/events?token=r1:user", { ["Last-Event-ID"] = j.id })
    local ev = s:message(2)
    assert.are.equal("tinysse.reset", ev.event)
    assert.are.equal("unknown", ev.json.reason)
    s:close()
    g2:stop()
  end)
end)

describe("replay history bounds", function()
  it("evicts by bytes and by age as documented", function()
    local g = T.start({ args = { "--buffer", "1000", "--buffer-bytes", "8192", "--buffer-age", "1",
                                 "--channel-history", "4" } })
    finally(function() g:stop() end)
    local pad = ("x"):rep(500)
    local ids = {}
    for i = 1, 30 do
      local st, _, body, j = g:publish({ targets = { "user:b1" }, handler_id = 1, data = { n = i, pad = pad } })
      assert.are.equal(200, st, body)
      ids[i] = j.id
    end
    -- 30 messages of ~650 bytes do not fit in 8 KiB: the oldest left
    assert.is_true(g:metric("tinysse_history_bytes") <= 8192)
    assert.is_true(g:metric('tinysse_history_evictions_total{cause="bytes"}') >= 15)
    local s = g:stream("/events?token=b1:rb", { ["Last-Event-ID"] = ids[1] })
    local ev = s:message(2)
    assert.are.equal("tinysse.reset", ev.event)
    s:close()
    local recent = g:stream("/events?token=b1:rb", { ["Last-Event-ID"] = ids[28] })
    assert.are.same({ 29, 30 }, seqs(recent:drain(0.4)))
    recent:close()
    -- a second later everything is past --buffer-age: nothing is replayed,
    -- and a client that missed those messages is told
    socket.sleep(1.3)
    local late = g:stream("/events?token=b1:rb", { ["Last-Event-ID"] = ids[28] })
    local lev = late:message(2)
    assert.are.equal("tinysse.reset", lev.event)
    assert.are.equal("too_old", lev.json.reason)
    late:close()
    assert.is_true(g:metric('tinysse_history_evictions_total{cause="age"}') >= 2)
    assert.are.equal(0, g:metric("tinysse_history_messages"))
    assert.is_true(g:metric('tinysse_replay_resets_total{reason="too_old"}') >= 2)
  end)
end)
