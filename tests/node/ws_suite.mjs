// WebSocket checks from Node: connects with @nats-io/nats-core's wsconnect and runs the
// scenarios of ws_scenarios.mjs (also run in a headless browser by browser_suite.mjs).
//
// Usage: node ws_suite.mjs ws://127.0.0.1:PORT
//
// Prints one line per check ("ok <name>"), then "all N websocket checks passed"; exits
// non-zero on the first failure. Node 20 has a global WebSocket only with
// --experimental-websocket, so the script re-runs itself with that flag when needed.

import { spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";

import { wsconnect } from "@nats-io/nats-core";
import { runScenarios } from "./ws_scenarios.mjs";

const url = process.argv[2];
if (!url) {
  console.log("usage: node ws_suite.mjs ws://HOST:PORT");
  process.exit(2);
}

if (typeof globalThis.WebSocket !== "function") {
  if (process.execArgv.includes("--experimental-websocket")) {
    console.log(`FAIL node ${process.version} has no WebSocket, even with --experimental-websocket`);
    process.exit(1);
  }
  const script = fileURLToPath(import.meta.url);
  const args = ["--experimental-websocket", ...process.execArgv, script, url];
  const r = spawnSync(process.execPath, args, { stdio: "inherit" });
  process.exit(r.status ?? 1);
}

// A ref'd timer: on Node 20 wsconnect may never settle when the handshake stalls (closing a
// still-connecting undici WebSocket fires no close event), which would otherwise end the
// process silently with exit code 13 (unsettled top-level await).
function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

let nc;
try {
  const connecting = wsconnect({ servers: url, reconnect: false, timeout: 5_000 });
  nc = await withTimeout(connecting, 10_000, "connect (WebSocket handshake and INFO)");
} catch (err) {
  console.log(`FAIL connect to ${url}: ${err?.stack ?? err}`);
  process.exit(1);
}
try {
  const n = await runScenarios(nc, (line) => console.log(line));
  await withTimeout(nc.close(), 10_000, "close");
  console.log(`all ${n} websocket checks passed`);
  process.exit(0);
} catch (err) {
  console.log(`FAIL ${err?.message ?? err}\n${err?.cause?.stack ?? err?.stack ?? ""}`);
  process.exit(1);
}
