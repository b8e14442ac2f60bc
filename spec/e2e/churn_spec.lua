-- Churn: a thousand clients dropping and resuming at random while messages
-- are published; every client must end with every message exactly once and
-- in order (a reset before a gap is the only allowed exception).
local T = require "support"

describe("churn", function()
  it("loses and repeats nothing across random drops and resumes", function()
    local g = T.start({ args = { "--buffer", "5000", "--max-clients-per-peer", "5000" } })
    local churn = os.getenv("TINYSSE_CHURN") or (T.root .. "/build/spec/churn")
    -- under valgrind the gateway is ~30x slower: a smaller crowd
    local clients, messages = 1000, 2000
    if T.valgrind then clients, messages = 200, 300 end
    local out = T.sh(string.format("timeout 150 %s %d %s %d %d 120 2>&1; echo status=$?",
                                   churn, g.port, g.key, clients, messages))
    print(out)
    assert.truthy(out:find("status=0", 1, true), out)
    local reconnects = tonumber(out:match("reconnects=(%d+)"))
    assert.is_true(reconnects > clients / 2, "too little churn: " .. tostring(reconnects))
    assert.truthy(out:find("duplicates=0 gaps=0 incomplete=0", 1, true))
    assert.is_true(g:stop())
  end)
end)
