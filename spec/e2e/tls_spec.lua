-- Native TLS end to end (issue 14): --tls-cert/--tls-key on every --listen
-- address beside a plain --plain-listen; TLS 1.2 and 1.3 only, ALPN h2 then
-- http/1.1, no compression; SSE streams and requests over TLS with a
-- verified certificate (curl --cacert); certificate renewal with SIGHUP
-- under open HTTP/2 and HTTP/1.1 streams (a new handshake gets the new
-- certificate, open streams keep receiving, a broken key is logged as
-- tls_reload_failed and the previous pair kept); --no-http2 (ALPN without
-- h2, no h2c on plain listeners); and bad TLS options (exit 2, a one-line
-- error naming the option and the file). Certificates are ECDSA P-256,
-- self-signed, made per run with the openssl CLI in a temp dir.
local T = require "support"
local H = require "h2_support"

local SLOW = H.SLOW
local KEY = T.publish_key

-- Waits until channel ch has n subscribers (over the plain listener).
local function await_subscribers(g, ch, n)
  T.wait_until(n .. " subscriber(s) on " .. ch, function()
    local _, _, _, j = g:request("GET", "/channels?channel=" .. ch, { Authorization = "Bearer " .. KEY })
    return j and j.subscribers == n
  end, 10 * SLOW)
end

-- How many times the log has said `event=NAME`.
local function log_count(g, name)
  local _, n = g:logtext():gsub("event=" .. name .. "[%s\n]", "")
  return n
end

-- curl options reaching the gateway's TLS port as https://localhost:PORT,
-- verifying its certificate against ca.
local function verified(g, ca, version)
  return { version, "--cacert", ca, "--resolve", "localhost:" .. g.tls_port .. ":127.0.0.1" }
end

describe("TLS listeners", function()
  local dir, g, crt, key

  setup(function()
    dir = T.tmpdir()
    crt, key = H.make_cert(dir, "a", "localhost")
    g = H.start({ tls_cert = crt, tls_key = key, dir = dir })
  end)

  teardown(function()
    if g then assert.is_true(g:stop()) end
  end)

  it("serve every --listen address with TLS and --plain-listen without it", function()
    local r = H.curl(dir, verified(g, crt, "--http1.1"), "https://localhost:" .. g.tls_port .. "/healthz")
    assert.are.equal(0, r.rc, r.out)
    assert.are.equal(200, r.code)
    assert.are.equal("ok", r.json.status)
    -- plain HTTP on the TLS port is not answered as HTTP
    local plain = H.curl(dir, { "--http1.1", "-m", tostring(5 * SLOW) }, "http://127.0.0.1:" .. g.tls_port .. "/healthz")
    assert.are_not.equal(200, plain.code)
    -- and the plain listener speaks no TLS
    local tls = H.curl(dir, { "-k", "-m", tostring(5 * SLOW) }, "https://127.0.0.1:" .. g.port .. "/healthz")
    assert.are_not.equal(0, tls.rc)
    assert.are.equal(200, (g:request("GET", "/healthz")))
  end)

  it("negotiate h2 by ALPN, or http/1.1 when the client offers only that", function()
    assert.are.equal("h2", H.alpn(g.tls_port, "h2,http/1.1"))
    assert.are.equal("h2", H.alpn(g.tls_port, "http/1.1,h2"))
    assert.are.equal("http/1.1", H.alpn(g.tls_port, "http/1.1"))
    local r2 = H.curl(dir, verified(g, crt, "--http2"), "https://localhost:" .. g.tls_port .. "/healthz")
    assert.are.equal(200, r2.code, r2.out)
    assert.are.equal("2", r2.version)
    local r1 = H.curl(dir, verified(g, crt, "--http1.1"), "https://localhost:" .. g.tls_port .. "/healthz")
    assert.are.equal(200, r1.code, r1.out)
    assert.are.equal("1.1", r1.version)
  end)

  it("take TLS 1.2 and 1.3 only, without compression", function()
    for _, v in ipairs({ "-tls1_2", "-tls1_3" }) do
      local out = H.run(string.format("timeout %d openssl s_client -connect 127.0.0.1:%d %s </dev/null",
                                      10 * SLOW, g.tls_port, v))
      assert.truthy(out:find("New, TLSv1%.[23], Cipher is [%w_%-]+"), v .. ": " .. out)
      assert.truthy(out:find("Compression: NONE", 1, true), out)
    end
    for _, v in ipairs({ "-tls1", "-tls1_1" }) do
      -- the client's own floor lowered, so a refusal is the server's
      local out = H.run(string.format("timeout %d openssl s_client -connect 127.0.0.1:%d %s " ..
                                      "-cipher DEFAULT@SECLEVEL=0 </dev/null", 10 * SLOW, g.tls_port, v))
      assert.truthy(out:find("Cipher is %(NONE%)"), v .. " was accepted: " .. out)
      assert.truthy(out:find("protocol version", 1, true), v .. ": " .. out)
    end
  end)

  it("carry SSE streams over HTTP/1.1 with a verified certificate", function()
    local s = H.curl_stream(dir, verified(g, crt, "--http1.1"),
                            "https://localhost:" .. g.tls_port .. "/events?token=tlsh1:r1", { "-D", "-" })
    await_subscribers(g, "user:tlsh1", 1)
    local st, _, _, j = g:publish({ targets = { "user:tlsh1" }, data = { over = "tls" } })
    assert.are.equal(200, st)
    T.wait_until("the message over TLS", function() return s:out():find(j.id, 1, true) end, 10 * SLOW)
    local out = s:out()
    assert.truthy(out:find("^HTTP/1%.1 200"), out)
    assert.truthy(out:lower():find("content-type: text/event-stream", 1, true), out)
    assert.truthy(out:find('"data":{"over":"tls"}', 1, true), out)
    assert.is_false(s:done(), "the stream ended: " .. out)
    s:stop()
  end)
end)

describe("certificate reload with SIGHUP", function()
  it("serves the new pair to new handshakes while open streams keep receiving; a bad key keeps the old pair", function()
    local dir = T.tmpdir()
    local crt_a, key_a, serial_a = H.make_cert(dir, "a", "cert-a")
    local crt_b, key_b, serial_b = H.make_cert(dir, "b", "cert-b")
    assert.are_not.equal(serial_a, serial_b)
    local live_crt, live_key = dir .. "/live.crt", dir .. "/live.key"
    local function install(c, k)
      -- written beside and renamed over, as a renewal tool does
      T.write_file(live_crt .. ".new", T.read_file(c))
      T.write_file(live_key .. ".new", T.read_file(k))
      assert(os.rename(live_crt .. ".new", live_crt))
      assert(os.rename(live_key .. ".new", live_key))
    end
    install(crt_a, key_a)
    local g = H.start({ tls_cert = live_crt, tls_key = live_key, dir = dir })
    local streams = {}
    local ok, err = pcall(function()
      local serial, subject = H.served_cert(g.tls_port)
      assert.are.equal(serial_a, serial)
      assert.truthy(subject:find("cert-a", 1, true))
      -- open streams under cert A: HTTP/2 and HTTP/1.1 over TLS, verified
      local url = "https://localhost:" .. g.tls_port .. "/events?token="
      streams.h2 = H.curl_stream(dir, verified(g, crt_a, "--http2"), url .. "reload2:r1", { "-D", "-" }, 60 * SLOW)
      streams.h1 = H.curl_stream(dir, verified(g, crt_a, "--http1.1"), url .. "reload1:r1", { "-D", "-" }, 60 * SLOW)
      await_subscribers(g, "role:r1", 2)
      local function publish_and_see(tag)
        local st, _, body, j = g:publish({ targets = { "role:r1" }, data = { tag = tag } })
        assert.are.equal(200, st, body)
        for name, s in pairs(streams) do
          T.wait_until(name .. " stream to get " .. tag, function()
            return s:out():find(j.id, 1, true) ~= nil or s:done()
          end, 10 * SLOW)
          assert.is_false(s:done(), name .. " stream ended (" .. tostring(s:rc()) .. "): " .. s:out())
          assert.truthy(s:out():find('"tag":"' .. tag .. '"', 1, true), s:out())
        end
      end
      publish_and_see("before")
      assert.truthy(streams.h2:out():find("^HTTP/2 200"), streams.h2:out())
      assert.truthy(streams.h1:out():find("^HTTP/1%.1 200"), streams.h1:out())

      -- renewal: cert B in place, SIGHUP
      install(crt_b, key_b)
      local reloads = log_count(g, "tls_reloaded")
      g:signal("HUP")
      T.wait_until("event=tls_reloaded", function() return log_count(g, "tls_reloaded") > reloads end, 10 * SLOW)
      serial, subject = H.served_cert(g.tls_port)
      assert.are.equal(serial_b, serial, "a new handshake after SIGHUP still gets the old certificate")
      assert.truthy(subject:find("cert-b", 1, true))
      local r = H.curl(dir, verified(g, crt_b, "--http2"), "https://localhost:" .. g.tls_port .. "/healthz")
      assert.are.equal(200, r.code, r.out)
      r = H.curl(dir, verified(g, crt_a, "--http2"), "https://localhost:" .. g.tls_port .. "/healthz")
      assert.are.equal(60, r.rc, "cert A still verifies a new connection: " .. r.out)
      publish_and_see("after-renewal")

      -- a broken key: logged, and cert B stays
      T.write_file(live_key, "garbage, not a PEM key\n")
      local failures = log_count(g, "tls_reload_failed")
      g:signal("HUP")
      T.wait_until("event=tls_reload_failed", function() return log_count(g, "tls_reload_failed") > failures end, 10 * SLOW)
      local line = g:logtext():match("[^\n]*event=tls_reload_failed[^\n]*")
      assert.truthy(line:find("live.key", 1, true), "the failure does not name the key file: " .. line)
      assert.truthy(line:find("level=error", 1, true), line)
      serial = H.served_cert(g.tls_port)
      assert.are.equal(serial_b, serial, "a failed reload changed the certificate")
      r = H.curl(dir, verified(g, crt_b, "--http1.1"), "https://localhost:" .. g.tls_port .. "/healthz")
      assert.are.equal(200, r.code, r.out)
      -- a certificate without its key (cert A, key B) is refused too
      install(crt_a, key_b)
      failures = log_count(g, "tls_reload_failed")
      g:signal("HUP")
      T.wait_until("event=tls_reload_failed (mismatch)", function()
        return log_count(g, "tls_reload_failed") > failures
      end, 10 * SLOW)
      assert.are.equal(serial_b, (H.served_cert(g.tls_port)))
      publish_and_see("after-failures")
      assert.is_true(g:alive())
    end)
    for _, s in pairs(streams) do s:stop() end
    local stopped = g:stop()
    assert(ok, err)
    assert.is_true(stopped)
  end)
end)

describe("--no-http2", function()
  local dir, g, crt, key

  setup(function()
    dir = T.tmpdir()
    crt, key = H.make_cert(dir, "a", "localhost")
    g = H.start({ tls_cert = crt, tls_key = key, dir = dir, args = { "--no-http2" } })
  end)

  teardown(function()
    if g then assert.is_true(g:stop()) end
  end)

  it("offers only http/1.1 by ALPN: curl --http2 ends up on HTTP/1.1", function()
    assert.are.equal("http/1.1", H.alpn(g.tls_port, "h2,http/1.1"))
    assert.are.equal("none", H.alpn(g.tls_port, "h2"))
    local r = H.curl(dir, verified(g, crt, "--http2"), "https://localhost:" .. g.tls_port .. "/healthz")
    assert.are.equal(200, r.code, r.out)
    assert.are.equal("1.1", r.version)
    local out, rc = H.run(string.format("timeout %d nghttp -nv -y https://127.0.0.1:%d/healthz", 10 * SLOW, g.tls_port))
    assert.are_not.equal(124, rc, "nghttp hung: " .. out)
    assert.truthy(out:find("HTTP/2 protocol was not selected", 1, true), out)
    -- a stream over TLS still works, as HTTP/1.1
    local s = H.curl_stream(dir, verified(g, crt, "--http2"),
                            "https://localhost:" .. g.tls_port .. "/events?token=noh2:r1", { "-D", "-" })
    await_subscribers(g, "user:noh2", 1)
    local _, _, _, j = g:publish({ targets = { "user:noh2" }, data = 1 })
    T.wait_until("the message", function() return s:out():find(j.id, 1, true) end, 10 * SLOW)
    assert.truthy(s:out():find("^HTTP/1%.1 200"), s:out())
    s:stop()
  end)

  it("takes no h2c on a plain listener: prior knowledge fails at once, HTTP/1.1 still works", function()
    local t0 = require("socket").gettime()
    local r = H.curl(dir, { "--http2-prior-knowledge", "-m", tostring(10 * SLOW) }, "http://127.0.0.1:" .. g.port .. "/healthz")
    assert.are_not.equal(0, r.rc, "h2c was answered: " .. r.out)
    assert.are_not.equal(28, r.rc, "h2c hung until curl's timeout: " .. r.out)
    assert.is_true(require("socket").gettime() - t0 < 5 * SLOW)
    local out, rc = H.run(string.format("timeout %d nghttp -nv http://127.0.0.1:%d/healthz", 10 * SLOW, g.port))
    assert.are_not.equal(124, rc, "nghttp hung: " .. out)
    assert.truthy(out:find("Some requests were not processed", 1, true), out)
    assert.is_true(g:alive())
    local h1 = H.curl(dir, { "--http1.1" }, "http://127.0.0.1:" .. g.port .. "/healthz")
    assert.are.equal(200, h1.code, h1.out)
  end)
end)

describe("bad TLS options", function()
  local dir, crt, key, port
  setup(function()
    dir = T.tmpdir()
    crt, key = H.make_cert(dir, "a", "localhost")
    port = T.free_port()
  end)

  -- Runs the gateway with these options; returns its output and exit status.
  local function run(args)
    local cmd = { "timeout", tostring(10 * SLOW), T.bin, "--listen", "127.0.0.1:" .. port,
                  "--script", T.root .. "/spec/e2e/scripts/test.lua", "--publish-key", KEY, "--workers", "1" }
    for _, a in ipairs(args) do cmd[#cmd + 1] = a end
    for i, a in ipairs(cmd) do cmd[i] = H.quote(a) end
    local out, rc = H.run(table.concat(cmd, " "))
    return out:gsub("%s+$", ""), rc
  end

  local function one_line(out)
    assert.are.equal(1, select(2, out:gsub("\n", "")) + 1, "not one line: " .. out)
  end

  it("--tls-cert without --tls-key (and the reverse): exit 2 saying they go together", function()
    for _, args in ipairs({ { "--tls-cert", crt }, { "--tls-key", key } }) do
      local out, rc = run(args)
      assert.are.equal(2, rc, out)
      one_line(out)
      assert.truthy(out:find("--tls-cert", 1, true) and out:find("--tls-key", 1, true), out)
    end
  end)

  it("a certificate or key that cannot be read or used: exit 2 naming the option and the file", function()
    local junk = dir .. "/junk.pem"
    T.write_file(junk, "this is not PEM\n")
    local other = dir .. "/other.key"
    local _, rc0 = H.run("openssl ecparam -name prime256v1 -genkey -noout -out " .. H.quote(other))
    assert.are.equal(0, rc0)
    local cases = {
      { { "--tls-cert", dir .. "/missing.crt", "--tls-key", key }, "--tls-cert", dir .. "/missing.crt" },
      { { "--tls-cert", junk, "--tls-key", key }, "--tls-cert", junk },
      { { "--tls-cert", crt, "--tls-key", dir .. "/missing.key" }, "--tls-key", dir .. "/missing.key" },
      { { "--tls-cert", crt, "--tls-key", junk }, "--tls-key", junk },
      { { "--tls-cert", crt, "--tls-key", other }, "--tls-key", other },
    }
    local is_root = (H.run("id -u")):match("^0") ~= nil
    if not is_root then
      local locked = dir .. "/locked.crt"
      T.write_file(locked, T.read_file(crt))
      H.run("chmod 000 " .. H.quote(locked))
      cases[#cases + 1] = { { "--tls-cert", locked, "--tls-key", key }, "--tls-cert", locked }
    end
    for _, c in ipairs(cases) do
      local out, rc = run(c[1])
      assert.are.equal(2, rc, table.concat(c[1], " ") .. ": " .. out)
      one_line(out)
      assert.truthy(out:find(c[2] .. " " .. c[3], 1, true), "does not name " .. c[2] .. " " .. c[3] .. ": " .. out)
    end
    -- the mismatched key is called that
    local out = run({ "--tls-cert", crt, "--tls-key", other })
    assert.truthy(out:lower():find("mismatch", 1, true), out)
  end)

  it("a certificate file that does not exist: the error says so", function()
    -- "clear": the reason a person can act on, not only OpenSSL's error code
    local out = run({ "--tls-cert", dir .. "/missing.crt", "--tls-key", key })
    local lower = out:lower()
    assert.truthy(lower:find("no such file", 1, true) or lower:find("not found", 1, true) or
                  lower:find("does not exist", 1, true),
                  "the error does not say the file is missing: " .. out)
  end)
end)
