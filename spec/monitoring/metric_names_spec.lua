-- scripts/monitoring/ against the real gateway (run by ctest as
-- monitoring_metric_names): every metric name in the alert rules, the
-- series their promtool tests feed in, and the Grafana dashboard's queries
-- must be one that a running gateway exports on /metrics (a single node,
-- and a cluster-mode node for the tinysse_redis_* names), with the label
-- values they match on; the dashboard's queries must be valid PromQL
-- (promtool), and each alert carries for:, a severity and its annotations.
local T = require "support"
local lyaml = require "lyaml"
local cjson = require "cjson"

local DIR = T.root .. "/scripts/monitoring"
local RULES = DIR .. "/tinysse-rules.yml"
local RULE_TESTS = DIR .. "/tinysse-rules-test.yml"
local DASHBOARD = DIR .. "/grafana-dashboard.json"

-- Labels Prometheus adds to every scraped series, and `up`, which it
-- makes itself: none of them come from the gateway.
local TARGET_LABELS = { job = true, instance = true }
local SYNTHETIC = { up = true }

local function have(cmd)
  return T.sh("command -v " .. cmd .. " 2>/dev/null") ~= ""
end

local function load_file(path)
  local text = T.read_file(path)
  assert(text ~= "", "cannot read " .. path)
  return text
end

---------------------------------------------------------------------------
-- The exposition: families (name -> type) and, per sample name, the labels
-- seen and their values.

local function parse_exposition(body, into)
  into = into or { types = {}, samples = {} }
  for line in body:gmatch("[^\n]+") do
    local name, typ = line:match("^# TYPE (%S+) (%S+)")
    if name then
      into.types[name] = typ
    elseif not line:match("^#") then
      local sample, rest = line:match("^([%a_:][%w_:]*)(.*)$")
      if sample then
        local s = into.samples[sample] or {}
        into.samples[sample] = s
        local labels = rest:match("^{(.-)}")
        for k, v in (labels or ""):gmatch('([%a_][%w_]*)="(.-)"') do
          s[k] = s[k] or {}
          s[k][v] = true
        end
      end
    end
  end
  return into
end

-- nil when `name` is a series the exposition has, else why not. A
-- histogram's series are its _bucket, _sum and _count.
local function unknown_name(exp, name)
  if exp.types[name] == "histogram" or exp.types[name] == "summary" then
    return name .. " is a " .. exp.types[name] .. ": query " .. name .. "_bucket, _sum or _count"
  end
  local base, suffix = name:match("^(.+)_(%a+)$")
  if base and (suffix == "bucket" or suffix == "sum" or suffix == "count")
      and exp.types[base] == "histogram" then
    return nil
  end
  if exp.types[name] and exp.samples[name] then return nil end
  return name .. " is not exported"
end

---------------------------------------------------------------------------
-- Metric names and their label matchers in a PromQL expression.

local KEYWORDS = { ["and"] = true, ["or"] = true, unless = true, bool = true, offset = true,
                   by = true, without = true, on = true, ignoring = true, group_left = true,
                   group_right = true, inf = true, nan = true }
-- keywords followed by a parenthesised list of label names, not an expression
local LABEL_LISTS = { by = true, without = true, on = true, ignoring = true,
                      group_left = true, group_right = true }

-- aggregations, which may take `by (...)` or `without (...)` before their
-- parenthesised argument
local AGGREGATIONS = { sum = true, min = true, max = true, avg = true, group = true, stddev = true,
                       stdvar = true, count = true, count_values = true, bottomk = true,
                       topk = true, quantile = true, limitk = true, limit_ratio = true }

-- Grafana's variables, replaced by something PromQL accepts.
local function degrafana(expr)
  return (expr:gsub("%$__[%w_]+", "5m"):gsub("%${[^}]*}", "x"):gsub("%$[%a_][%w_]*", "x"))
end

local function skip_string(s, i)
  local q = s:sub(i, i)
  i = i + 1
  while i <= #s do
    local c = s:sub(i, i)
    if c == "\\" and q ~= "`" then
      i = i + 2
    elseif c == q then
      return i + 1
    else
      i = i + 1
    end
  end
  error("unterminated string in: " .. s)
end

-- Parses `{label op "value", ...}` from s at i (on the `{`); returns the
-- matchers and the position after `}`.
local function matchers(s, i)
  local list = {}
  i = i + 1
  while true do
    i = s:find("[^%s,]", i) or error("unterminated { in: " .. s)
    if s:sub(i, i) == "}" then return list, i + 1 end
    local label, op, j = s:match("^([%a_][%w_]*)%s*([=!~]~?)%s*()", i)
    if not label then error("cannot read the label matchers in: " .. s) end
    local q = s:sub(j, j)
    if q ~= '"' and q ~= "'" and q ~= "`" then error("label value not quoted in: " .. s) end
    local after = skip_string(s, j)
    list[#list + 1] = { label = label, op = op, value = s:sub(j + 1, after - 2) }
    i = after
  end
end

-- Returns a list of { name = metric, matchers = {...} } for every vector
-- selector in expr.
local function selectors(expr)
  local s = degrafana(expr)
  local out, i = {}, 1
  local last -- the selector a following `{` belongs to
  while i <= #s do
    local c = s:sub(i, i)
    if c:match("%s") then
      i = i + 1
    elseif c == '"' or c == "'" or c == "`" then
      i, last = skip_string(s, i), nil
    elseif c == "#" then
      i = (s:find("\n", i) or #s) + 1
    elseif c == "[" then
      i, last = (s:find("]", i, true) or error("unterminated [ in: " .. s)) + 1, nil
    elseif c == "{" then
      local list
      list, i = matchers(s, i)
      if last then
        last.matchers = list
      else -- {__name__="..."}
        local sel = { matchers = list }
        for _, m in ipairs(list) do
          if m.label == "__name__" and m.op == "=" then sel.name = m.value end
        end
        if sel.name then out[#out + 1] = sel end
      end
      last = nil
    elseif c:match("[%d%.]") then
      i, last = (s:find("[^%w%.]", i) or #s + 1), nil -- a number or a duration
    elseif c:match("[%a_:]") then
      local word = s:match("^[%a_:][%w_:]*", i)
      i = i + #word
      local next_i = s:find("%S", i) or #s + 1
      local follows = s:sub(next_i, next_i)
      last = nil
      if LABEL_LISTS[word] and follows == "(" then
        i = (s:find(")", next_i, true) or error("unterminated ( in: " .. s)) + 1
      elseif KEYWORDS[word:lower()] then
        -- an operator or modifier
      elseif follows == "(" or (AGGREGATIONS[word:lower()] and
                                 (s:match("^by%s*%(", next_i) or s:match("^without%s*%(", next_i))) then
        -- a function or an aggregation
      else
        local sel = { name = word, matchers = {} }
        out[#out + 1] = sel
        last = sel
      end
    else
      i, last = i + 1, nil
    end
  end
  return out
end

-- Grafana's label_values(selector, label): the selector part.
local function template_selectors(query)
  local inner = query:match("^%s*label_values%s*%((.*)%)%s*$")
  if inner then
    local sel = inner:match("^(.*),%s*[%a_][%w_]*%s*$") or ""
    return sel ~= "" and selectors(sel) or {}
  end
  return selectors(query)
end

---------------------------------------------------------------------------
-- What the three files use: a list of { where, expr }.

local function rule_exprs()
  local doc = lyaml.load(load_file(RULES))
  local list = {}
  for _, g in ipairs(doc.groups) do
    for _, r in ipairs(g.rules) do
      list[#list + 1] = { where = "rule " .. (r.alert or r.record), expr = r.expr }
    end
  end
  return list, doc
end

local function rule_test_exprs()
  local doc = lyaml.load(load_file(RULE_TESTS))
  local list = {}
  for n, t in ipairs(doc.tests) do
    for _, s in ipairs(t.input_series or {}) do
      list[#list + 1] = { where = "test " .. n .. " input series", expr = s.series }
    end
    for _, e in ipairs(t.promql_expr_test or {}) do
      list[#list + 1] = { where = "test " .. n .. " promql_expr_test", expr = e.expr }
    end
  end
  return list
end

local function each_panel(panels, fn)
  for _, p in ipairs(panels or {}) do
    fn(p)
    each_panel(p.panels, fn)
  end
end

local function dashboard_exprs()
  local doc = cjson.decode(load_file(DASHBOARD))
  local list = {}
  each_panel(doc.panels, function(p)
    for _, t in ipairs(p.targets or {}) do
      list[#list + 1] = { where = "panel \"" .. p.title .. "\" " .. t.refId, expr = t.expr }
    end
  end)
  for _, v in ipairs(doc.templating and doc.templating.list or {}) do
    if v.type == "query" then
      local q = type(v.query) == "table" and v.query.query or v.query
      list[#list + 1] = { where = "variable $" .. v.name, expr = q, template = true }
    end
  end
  return list, doc
end

-- Problems with the names and label matchers the expressions use, against
-- the exposition; names only a cluster node has go to `unverified` when no
-- cluster node was scraped.
local function check(exp, exprs, cluster_scraped, unverified)
  local problems, used = {}, 0
  for _, e in ipairs(exprs) do
    assert(type(e.expr) == "string" and e.expr ~= "", e.where .. " has no expression")
    for _, sel in ipairs(e.template and template_selectors(e.expr) or selectors(e.expr)) do
      used = used + 1
      local why = not SYNTHETIC[sel.name] and unknown_name(exp, sel.name)
      if why and not cluster_scraped and sel.name:match("^tinysse_redis_") then
        unverified[sel.name] = true
      elseif why then
        problems[#problems + 1] = e.where .. ": " .. why .. " (in " .. e.expr .. ")"
      elseif not SYNTHETIC[sel.name] then
        local seen = exp.samples[sel.name] or {}
        for _, m in ipairs(sel.matchers) do
          if not TARGET_LABELS[m.label] and m.label ~= "__name__" then
            if not seen[m.label] then
              problems[#problems + 1] = string.format("%s: %s has no label %s (in %s)",
                                                      e.where, sel.name, m.label, e.expr)
            elseif m.op == "=" and not seen[m.label][m.value] then
              problems[#problems + 1] = string.format("%s: %s{%s} never has the value %q (in %s)",
                                                      e.where, sel.name, m.label, m.value, e.expr)
            end
          end
        end
      end
    end
  end
  return problems, used
end

local function promtool()
  local p = os.getenv("TINYSSE_PROMTOOL")
  if p and p ~= "" then return p end
  if have("promtool") then return "promtool" end
end

---------------------------------------------------------------------------

describe("scripts/monitoring", function()
  local single, node, redis
  local exp = { types = {}, samples = {} }
  local cluster_scraped = false
  local unverified = {}

  setup(function()
    single = T.start()
    local st, _, body = single:request("GET", "/metrics")
    assert(st == 200, "GET /metrics: " .. tostring(st))
    parse_exposition(body, exp)
    if have("redis-server") and have("redis-cli") then
      redis = T.start_redis()
      node = T.start({ args = { "--redis", redis:url(), "--redis-key", "monitoring" .. os.time() } })
      st, _, body = node:request("GET", "/metrics")
      assert(st == 200, "GET /metrics (cluster mode): " .. tostring(st))
      parse_exposition(body, exp)
      cluster_scraped = true
    end
  end)

  teardown(function()
    if node then node:stop() end
    if redis then redis:stop() end
    if single then single:stop() end
  end)

  it("reads the gateway's /metrics and finds its families", function()
    for _, name in ipairs({ "tinysse_connections", "tinysse_script_errors_total",
                            "tinysse_shed_total", "tinysse_resets_total" }) do
      assert.truthy(exp.types[name], name .. " not found in /metrics")
    end
    assert.are.equal("histogram", exp.types.tinysse_publish_to_write_seconds)
    assert.truthy(exp.samples.tinysse_shed_total.reason.max_connections)
    if cluster_scraped then assert.are.equal("gauge", exp.types.tinysse_redis_up) end
  end)

  it("catches a name the gateway does not export, a bare histogram and a wrong label value", function()
    local problems = check(exp, {
      { where = "a", expr = 'rate(tinysse_no_such_metric_total[5m]) > 0 and on (instance) up == 1' },
      { where = "b", expr = 'histogram_quantile(0.9, rate(tinysse_publish_to_write_seconds[5m]))' },
      { where = "c", expr = 'sum by (reason) (rate(tinysse_shed_total{reason="no_such_reason"}[$__rate_interval]))' },
      { where = "d", expr = 'sum(tinysse_connections{shard="1"})' },
      { where = "e", expr = 'rate(tinysse_publish_to_write_seconds_bucket{le="+Inf"}[5m]) / ignoring (le) tinysse_deliveries_total' },
    }, true, {})
    assert.are.equal(4, #problems, table.concat(problems, "\n"))
    assert.truthy(problems[1]:find("tinysse_no_such_metric_total is not exported", 1, true))
    assert.truthy(problems[2]:find("is a histogram", 1, true))
    assert.truthy(problems[3]:find('never has the value "no_such_reason"', 1, true))
    assert.truthy(problems[4]:find("has no label shard", 1, true))
  end)

  it("the alert rules use only exported metrics", function()
    local problems, used = check(exp, (rule_exprs()), cluster_scraped, unverified)
    assert.is_true(used >= 6, "found only " .. used .. " metric selectors in the rules")
    assert.are.same({}, problems, table.concat(problems, "\n"))
  end)

  it("the rule tests feed in only exported metrics", function()
    local problems, used = check(exp, rule_test_exprs(), cluster_scraped, unverified)
    assert.is_true(used >= 6, "found only " .. used .. " input series in the rule tests")
    assert.are.same({}, problems, table.concat(problems, "\n"))
  end)

  it("the dashboard's queries use only exported metrics", function()
    local problems, used = check(exp, (dashboard_exprs()), cluster_scraped, unverified)
    assert.is_true(used >= 20, "found only " .. used .. " metric selectors in the dashboard")
    assert.are.same({}, problems, table.concat(problems, "\n"))
  end)

  it("names only Redis metrics a cluster-mode gateway exports", function()
    if not cluster_scraped then
      local names = {}
      for n in pairs(unverified) do names[#names + 1] = n end
      table.sort(names)
      pending("redis-server not found: no cluster-mode gateway to check " .. table.concat(names, ", "))
      return
    end
    -- with a cluster node scraped, the checks above covered them
    assert.are.same({}, unverified)
  end)

  it("gives every alert a for:, a severity, a summary and a description", function()
    local _, doc = rule_exprs()
    local alerts = 0
    for _, g in ipairs(doc.groups) do
      for _, r in ipairs(g.rules) do
        if r.alert then
          alerts = alerts + 1
          assert.truthy(r["for"], r.alert .. " has no for:")
          assert.truthy(r.labels and (r.labels.severity == "critical" or r.labels.severity == "warning"),
                        r.alert .. " has no severity critical or warning")
          assert.truthy(r.annotations and r.annotations.summary, r.alert .. " has no summary")
          assert.truthy(r.annotations and r.annotations.description, r.alert .. " has no description")
        end
      end
    end
    assert.are.equal(7, alerts)
  end)

  it("imports with a ${DS_PROMETHEUS} input that every query uses", function()
    local list, doc = dashboard_exprs()
    assert.are.equal("DS_PROMETHEUS", doc.__inputs[1].name)
    assert.are.equal("prometheus", doc.__inputs[1].pluginId)
    assert.is_true(doc.schemaVersion >= 36, "schemaVersion " .. tostring(doc.schemaVersion))
    local wrong = {}
    local function uses_input(ds) return ds and ds.uid == "${DS_PROMETHEUS}" end
    each_panel(doc.panels, function(p)
      if p.type ~= "row" and not uses_input(p.datasource) then wrong[#wrong + 1] = p.title end
      for _, t in ipairs(p.targets or {}) do
        if not uses_input(t.datasource) then wrong[#wrong + 1] = p.title .. " " .. t.refId end
      end
    end)
    for _, v in ipairs(doc.templating.list) do
      if v.type == "query" and not uses_input(v.datasource) then wrong[#wrong + 1] = "$" .. v.name end
    end
    assert.are.same({}, wrong)
    assert.is_true(#list >= 20)
  end)

  it("the dashboard's queries are valid PromQL (promtool)", function()
    local tool = promtool()
    if not tool then
      pending("promtool not found (Debian's prometheus package has it)")
      return
    end
    local rules = {}
    for n, e in ipairs((dashboard_exprs())) do
      if not e.template then
        rules[#rules + 1] = { record = "dashboard:query" .. n, expr = degrafana(e.expr) }
      end
    end
    local dir = T.tmpdir()
    -- JSON is YAML: promtool reads it as a rule file (once cjson's "\/",
    -- which YAML does not know, is a plain "/" again)
    local json = cjson.encode({ groups = { { name = "dashboard", rules = rules } } }):gsub("\\/", "/")
    T.write_file(dir .. "/dashboard-rules.yml", json)
    local out = T.sh(tool .. " check rules " .. dir .. "/dashboard-rules.yml 2>&1; echo \"exit=$?\"")
    T.sh("rm -rf " .. dir)
    assert.truthy(out:find("exit=0", 1, true), out)
    assert.truthy(out:find("SUCCESS: " .. #rules .. " rules found", 1, true), out)
  end)
end)
