// A nats.js KV watcher across a kill -9 of the server: run by tests/kv_watch_restart.rs,
// which kills and restarts the server once this script prints "watching".
//
// Usage: node kv_watch_restart.mjs nats://127.0.0.1:PORT
//
// Exits non-zero unless the watcher sees a put made after the restart within RESUME_LIMIT.

import { connect } from "@nats-io/transport-node";
import { Kvm } from "@nats-io/kv";

const RESUME_LIMIT = 8_000; // ms from the first successful put after the restart
const url = process.argv[2];

function fail(msg) {
  console.log(`FAIL ${msg}`);
  process.exit(1);
}
setTimeout(() => fail("took more than 60 s"), 60_000).unref();

const nc = await connect({
  servers: url,
  reconnect: true,
  maxReconnectAttempts: -1,
  reconnectTimeWait: 100,
  timeout: 5_000,
});
const kv = await new Kvm(nc).create("NW");
const watch = await kv.watch();
const seen = watch[Symbol.asyncIterator]();
await kv.put("a", "1");
const first = await seen.next();
if (first.value?.key !== "a") fail(`first entry ${JSON.stringify(first.value?.key)}`);

let reconnected;
const back = new Promise((resolve) => (reconnected = resolve));
(async () => {
  for await (const s of nc.status()) {
    if (s.type === "reconnect") reconnected();
  }
})();
console.log("watching");
await back;

// JetStream may need a moment after the restart: retry the put.
let putAt;
for (let i = 0; ; i++) {
  try {
    await kv.put("b", "2");
    putAt = Date.now();
    break;
  } catch (err) {
    if (i >= 100) fail(`put after restart: ${err}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}
const timer = setTimeout(() => fail(`watcher silent ${RESUME_LIMIT} ms after the put`), RESUME_LIMIT);
for (;;) {
  const next = await seen.next();
  if (next.done) fail("watch ended");
  if (next.value.key === "b") break;
  if (next.value.key !== "a") fail(`unexpected key ${next.value.key}`);
}
clearTimeout(timer);
console.log(`resumed ${Date.now() - putAt} ms after the put`);
console.log("all ok");
await nc.close();
process.exit(0);
