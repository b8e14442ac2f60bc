-- The layout rules of the core, checked on the source tree (run by ctest
-- as layout_layers): no include cycle among the modules of core/ and lua/
-- (a module is x.c + x.h; an include of "y.h" from either makes x depend
-- on y; a private header x_impl.h is part of module x), no C source file there over 600 lines, and every file opens with
-- a comment saying what it is for. Prints the offenders and exits 1.
local root = arg[1] or "."
local MAX_LINES = 600

local function files(dir)
  local p = assert(io.popen("ls " .. root .. "/" .. dir))
  local out = {}
  for name in p:lines() do
    if name:match("%.[ch]$") then out[#out + 1] = dir .. "/" .. name end
  end
  p:close()
  return out
end

local deps, problems = {}, {}
for _, dir in ipairs({ "core", "lua" }) do
  for _, path in ipairs(files(dir)) do
    local module = path:match("([^/]+)%.[ch]$"):gsub("_impl$", "")
    deps[module] = deps[module] or {}
    local f = assert(io.open(root .. "/" .. path))
    local text = f:read("a")
    f:close()
    for inc in text:gmatch('#include "([%w_]+)%.h"') do
      inc = inc:gsub("_impl$", "")
      if inc ~= module then deps[module][inc] = true end
    end
    local lines = select(2, text:gsub("\n", "\n"))
    if path:match("%.c$") and lines > MAX_LINES then
      problems[#problems + 1] = string.format("%s has %d lines (at most %d)", path, lines, MAX_LINES)
    end
    if not text:match("^/%*") then
      problems[#problems + 1] = path .. " does not open with a comment saying what it is for"
    end
  end
end

-- Tarjan's strongly connected components: any with more than one module
-- is an include cycle.
local index, low, on, stack, n = {}, {}, {}, {}, 0
local function visit(v)
  n = n + 1
  index[v], low[v] = n, n
  stack[#stack + 1] = v
  on[v] = true
  for w in pairs(deps[v]) do
    if deps[w] then
      if not index[w] then
        visit(w)
        low[v] = math.min(low[v], low[w])
      elseif on[w] then
        low[v] = math.min(low[v], index[w])
      end
    end
  end
  if low[v] == index[v] then
    local comp = {}
    repeat
      local w = table.remove(stack)
      on[w] = nil
      comp[#comp + 1] = w
    until w == v
    if #comp > 1 then
      table.sort(comp)
      problems[#problems + 1] = "include cycle: " .. table.concat(comp, ", ")
    end
  end
end
local names = {}
for m in pairs(deps) do names[#names + 1] = m end
table.sort(names)
for _, m in ipairs(names) do
  if not index[m] then visit(m) end
end

if #problems > 0 then
  for _, p in ipairs(problems) do print(p) end
  os.exit(1)
end
print(string.format("%d modules, no include cycle, no C file over %d lines", #names, MAX_LINES))
