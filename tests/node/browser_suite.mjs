// WebSocket checks from a real browser: serves a page that runs ws_scenarios.mjs in headless
// Chromium against a NATS WebSocket listener and collects the page's results.
//
// Usage: node browser_suite.mjs ws://127.0.0.1:PORT   (needs /usr/bin/chromium, or $CHROMIUM)
//
// Prints the page's lines as they come ("ok <name>" per check), then "all N browser checks
// passed"; exits non-zero with diagnostics (page report, failed requests, Chromium's output)
// otherwise.
//
// The @nats-io npm packages are CommonJS, which a browser cannot import. So this HTTP server
// (127.0.0.1, port 0) bundles the CommonJS modules reachable from the packages below into one
// module (/cjs.js, a tiny require() registry, resolved with Node's own resolver), and serves
// for each package an ES module facade re-exporting its named exports; the page's import map
// points the bare specifiers at those facades, so ws_scenarios.mjs runs unchanged.

import { spawn } from "node:child_process";
import fs from "node:fs";
import http from "node:http";
import { createRequire, isBuiltin } from "node:module";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";

const PACKAGES = ["@nats-io/nats-core", "@nats-io/jetstream", "@nats-io/kv"];
const OVERALL_TIMEOUT = 90_000; // ms
const CHROMIUM = process.env.CHROMIUM || "/usr/bin/chromium";

const here = path.dirname(fileURLToPath(import.meta.url));
const nodeModules = path.join(here, "node_modules");
const url = process.argv[2];
if (!url) {
  console.log("usage: node browser_suite.mjs ws://HOST:PORT");
  process.exit(2);
}
if (!fs.existsSync(CHROMIUM)) {
  console.log(`FAIL ${CHROMIUM} not found: install it (apt-get install chromium) or set CHROMIUM`);
  process.exit(1);
}

/** One ES module defining every CommonJS module reachable from PACKAGES, plus load(id). */
function bundle() {
  const ids = new Map(); // absolute file -> id (its path under node_modules)
  const defs = [];
  const visit = (file) => {
    if (ids.has(file)) return ids.get(file);
    const id = path.relative(nodeModules, file);
    ids.set(file, id);
    const src = fs.readFileSync(file, "utf8");
    const deps = {};
    for (const [, , spec] of src.matchAll(/\brequire\(\s*(["'])([^"']+)\1\s*\)/g)) {
      // Node built-ins (tweetnacl's fallback require("crypto")) load as an empty object.
      deps[spec] = isBuiltin(spec) ? null : visit(createRequire(file).resolve(spec));
    }
    const body = file.endsWith(".json") ? `module.exports = ${src};` : src;
    const fn = `function (require, module, exports) {\n${body}\n}`;
    defs.push(`${JSON.stringify(id)}: [${fn}, ${JSON.stringify(deps)}]`);
    return id;
  };
  const resolve = createRequire(import.meta.url).resolve;
  const entries = Object.fromEntries(PACKAGES.map((p) => [p, visit(resolve(p))]));
  const code = `const defs = {\n${defs.join(",\n")}\n};
const cache = new Map();
export function load(id) {
  if (id === null) return {};
  if (!cache.has(id)) {
    const [fn, deps] = defs[id];
    const module = { exports: {} };
    cache.set(id, module);
    fn((spec) => {
      if (!(spec in deps)) throw new Error(\`\${id}: require(\${spec}) is not bundled\`);
      return load(deps[spec]);
    }, module, module.exports);
  }
  return cache.get(id).exports;
}
`;
  return { code, entries };
}

/** An ES module re-exporting the named exports of a bundled CommonJS package. */
function facade(pkg, id) {
  const names = Object.keys(createRequire(import.meta.url)(pkg)).filter(
    (n) => n !== "default" && /^[A-Za-z_$][\w$]*$/.test(n),
  );
  return `import { load } from "/cjs.js";
const m = load(${JSON.stringify(id)});
export default m;
export const { ${names.join(", ")} } = m;
`;
}

const { code: cjs, entries } = bundle();
const importMap = { imports: Object.fromEntries(PACKAGES.map((p) => [p, `/esm/${p}.js`])) };
const PAGE = `<!doctype html>
<meta charset="utf-8">
<title>causeway websocket checks</title>
<script type="importmap">${JSON.stringify(importMap)}</script>
<script type="module">
const report = (kind, text) =>
  fetch("/report", { method: "POST", body: JSON.stringify({ kind, text }) });
let sent = Promise.resolve();
const log = (line) => { sent = sent.then(() => report("line", line)); };
addEventListener("unhandledrejection", (e) =>
  log(\`page: unhandled rejection: \${e.reason?.stack ?? e.reason}\`));
try {
  const ws = new URLSearchParams(location.search).get("ws");
  const { wsconnect } = await import("@nats-io/nats-core");
  const { runScenarios } = await import("/ws_scenarios.mjs");
  const nc = await wsconnect({ servers: ws, reconnect: false, timeout: 5000 });
  log(\`connected to \${ws} from \${navigator.userAgent}\`);
  const n = await runScenarios(nc, log);
  await nc.close();
  await sent;
  await report("done", String(n));
} catch (err) {
  await sent;
  await report("fail", \`\${err?.message ?? err}\\n\${err?.cause?.stack ?? err?.stack ?? ""}\`);
}
</script>
`;

const js = "text/javascript";
const routes = {
  "/": () => ["text/html", PAGE],
  "/cjs.js": () => [js, cjs],
  "/ws_scenarios.mjs": () => [js, fs.readFileSync(path.join(here, "ws_scenarios.mjs"))],
  ...Object.fromEntries(PACKAGES.map((p) => [`/esm/${p}.js`, () => [js, facade(p, entries[p])]])),
};
const misses = [];
let settle;
const result = new Promise((resolve) => (settle = resolve));
const fail = (text) => settle({ ok: false, text });

const server = http.createServer((req, res) => {
  const { pathname } = new URL(req.url, "http://x");
  if (req.method === "POST" && pathname === "/report") {
    let body = "";
    req.on("data", (c) => (body += c));
    req.on("end", () => {
      const { kind, text } = JSON.parse(body);
      if (kind === "line") console.log(text);
      else if (kind === "done") settle({ ok: true, text });
      else fail(`in the browser: ${text}`);
      res.end();
    });
  } else if (routes[pathname]) {
    const [type, body] = routes[pathname]();
    res.writeHead(200, { "content-type": `${type}; charset=utf-8`, "cache-control": "no-store" });
    res.end(body);
  } else {
    if (pathname !== "/favicon.ico") misses.push(`${req.method} ${req.url}`);
    res.writeHead(404).end();
  }
});
await new Promise((resolve) => server.listen(0, "127.0.0.1", resolve));
const pageUrl = `http://127.0.0.1:${server.address().port}/?ws=${encodeURIComponent(url)}`;

const profile = fs.mkdtempSync(path.join(os.tmpdir(), "causeway-chromium-"));
const chromium = spawn(
  CHROMIUM,
  [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", `--user-data-dir=${profile}`,
    // Only 127.0.0.1 resolves: nothing leaves the machine.
    "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1",
    pageUrl,
  ],
  { detached: true, stdio: ["ignore", "pipe", "pipe"] },
);
let output = "";
const keep = (chunk) => (output = (output + chunk).slice(-20_000));
chromium.stdout.on("data", keep);
chromium.stderr.on("data", keep);
const exited = new Promise((resolve) => {
  chromium.on("exit", (code, signal) => resolve(`${code ?? signal}`));
});
exited.then((how) => fail(`chromium exited (${how}) before the page reported`));
chromium.on("error", (err) => fail(`cannot start ${CHROMIUM}: ${err.message}`));
const timer = setTimeout(() => fail(`no result within ${OVERALL_TIMEOUT} ms`), OVERALL_TIMEOUT);

const { ok, text } = await result;
clearTimeout(timer);
try {
  process.kill(-chromium.pid, "SIGKILL");
} catch {
  // already gone
}
await Promise.race([exited, new Promise((resolve) => setTimeout(resolve, 5_000))]);
fs.rmSync(profile, { recursive: true, force: true });
server.close();

if (ok) {
  console.log(`all ${text} browser checks passed`);
  process.exit(0);
}
console.log(`FAIL ${text}`);
if (misses.length) console.log(`requests the server could not answer: ${misses.join(", ")}`);
const noise = /ERROR:dbus\/|unexpected operator/; // no system bus in containers; Debian's wrapper
const tail = output.split("\n").filter((l) => !noise.test(l)).slice(-30);
console.log(`chromium output (tail, without D-Bus noise):\n${tail.join("\n")}`);
process.exit(1);
