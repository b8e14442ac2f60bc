-- How streams are written: io_uring batches by default, one writev per
-- stream with --no-io-uring; either way every stream gets every frame once,
-- in order, including streams that stop reading for a while (full sockets,
-- partial sends, waiting for writability).
local T = require "support"

local function uses_writev_only()
  return (os.getenv("TINYSSE_TEST_ARGS") or ""):find("--no-io-uring", 1, true) ~= nil
end

for _, mode in ipairs({ "io_uring", "writev" }) do
  describe("stream writes (" .. mode .. ")", function()
    local g
    setup(function()
      local args = { "--max-queue", "8388608", "--heartbeat", "30" }
      if mode == "writev" then args[#args + 1] = "--no-io-uring" end
      g = T.start({ args = args })
    end)
    teardown(function() g:stop() end)

    it("says in /metrics which write path its workers use", function()
      local n = g:metric("tinysse_io_uring_workers")
      local workers = tonumber(os.getenv("TINYSSE_TEST_WORKERS") or "1")
      if mode == "writev" or uses_writev_only() then
        assert.are.equal(0, n)
      elseif g:logtext():find("event=io_uring_unavailable", 1, true) then
        -- the kernel refused io_uring here: the gateway said so and fell back
        assert.are.equal(0, n)
      else
        assert.are.equal(workers, n)
      end
    end)

    it("delivers large bursts whole and in order to streams that read late", function()
      local streams = {}
      for i = 1, 20 do
        streams[i] = g:stream("/events?token=w" .. i .. ":user")
        assert.are.equal(200, streams[i].status)
      end
      -- 12 messages of ~150 KB, 1.8 MB per stream: sockets fill while
      -- nobody reads, streams wait for writability with frames queued, and
      -- fresh frames join the backlog (the batched send of a single frame
      -- cut short is in spec/unit/test_uring.c)
      local pad = string.rep("x", 150000)
      for n = 1, 12 do
        assert.are.equal(200, g:publish({ targets = { "all" }, handler_id = 1, data = { n = n, pad = pad } }))
      end
      local bad = {}
      for i, s in ipairs(streams) do
        local got = {}
        while #got < 12 do
          local ev = s:message(5)
          if not ev then break end
          local d = ev.json and ev.json.data
          if d and d.pad == pad then got[#got + 1] = d.n else got[#got + 1] = "corrupt" end
        end
        for n = 1, 12 do
          if got[n] ~= n then
            bad[#bad + 1] = string.format("stream %d: message %d is %s", i, n, tostring(got[n]))
            break
          end
        end
        if #bad == 0 and #s:drain(0.2) ~= 0 then bad[#bad + 1] = "stream " .. i .. ": extra messages" end
        s:close()
      end
      assert.are.same({}, bad)
      assert.are.equal(0, g:metric("tinysse_slow_disconnects_total"))
    end)
  end)
end
