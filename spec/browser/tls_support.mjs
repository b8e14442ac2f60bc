// Shared by the browser tests that run the gateway with native TLS
// (spec/browser/h2_tabs.test.mjs, wasm/test/browser_h2.test.mjs): a
// throw-away ECDSA P-256 self-signed certificate for 127.0.0.1 and localhost
// made with the openssl CLI, free loopback ports, the TCP connections
// established to a port (ss), and the flags headless Chromium runs with.
import { execFileSync } from "node:child_process";
import net from "node:net";
import path from "node:path";

// Writes cert.pem and key.pem into dir; returns their paths.
export function makeCert(dir) {
  const cert = path.join(dir, "cert.pem"), key = path.join(dir, "key.pem");
  execFileSync("openssl", ["req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
    "-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=localhost",
    "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"], { stdio: ["ignore", "ignore", "pipe"] });
  return { cert, key };
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer().listen(0, "127.0.0.1", () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
    s.on("error", reject);
  });
}

// Established TCP connections whose local (server) port is `port`: the
// connections clients hold to a gateway listening there.
export function establishedTo(port) {
  const out = execFileSync("ss", ["-Htn", "state", "established", `( sport = :${port} )`], { encoding: "utf8" });
  return out.split("\n").filter((l) => l.trim()).length;
}

// Headless Chromium the way the other browser tests launch it; the
// certificate is self-signed, so certificate errors are ignored (the
// contexts also set ignoreHTTPSErrors).
export const CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
  "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
  "--ignore-certificate-errors"];
