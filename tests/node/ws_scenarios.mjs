// WebSocket client scenarios shared by ws_suite.mjs (Node) and browser_suite.mjs (headless
// Chromium): core pub/sub with headers, request/reply, JetStream publish acks, KV put/get/watch.
//
// runScenarios(nc, log) takes a connection from @nats-io/nats-core's wsconnect, reports
// "ok <name>" through log(line) per check, returns the number of checks passed and throws on
// the first failure. It imports only bare "@nats-io/..." specifiers (Node resolves them from
// node_modules, the browser page through an import map), so no node: modules here.

import { headers } from "@nats-io/nats-core";
import { jetstream, jetstreamManager } from "@nats-io/jetstream";
import { Kvm } from "@nats-io/kv";

const CHECK_TIMEOUT = 20_000; // ms, per check
const MSG_TIMEOUT = 5_000; // ms, per awaited message

const enc = new TextEncoder();

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

function equal(got, want, what) {
  const [g, w] = [JSON.stringify(got), JSON.stringify(want)];
  if (g !== w) throw new Error(`${what}: got ${g}, want ${w}`);
}

async function rejects(promise, what) {
  try {
    await promise;
  } catch (err) {
    return err;
  }
  throw new Error(`expected a rejection: ${what}`);
}

// A QueuedIterator may be iterated only once: keep the one iterator per subscription/watcher.
const iterators = new WeakMap();

/** The next `n` values of a subscription or watcher, each within MSG_TIMEOUT. */
async function take(iterable, n) {
  if (!iterators.has(iterable)) iterators.set(iterable, iterable[Symbol.asyncIterator]());
  const it = iterators.get(iterable);
  const out = [];
  for (let i = 0; i < n; i++) {
    const r = await withTimeout(it.next(), MSG_TIMEOUT, `value ${i + 1} of ${n}`);
    if (r.done) throw new Error(`iterator ended after ${i} of ${n} values`);
    out.push(r.value);
  }
  return out;
}

const id = Math.random().toString(36).slice(2, 10);
const range = (n) => [...Array(n).keys()];

async function checkPubSubOrder(nc) {
  const subject = `ws.order.${id}`;
  const sub = nc.subscribe(subject);
  await nc.flush();
  for (let i = 0; i < 20; i++) nc.publish(subject, `m${i}`);
  nc.publish(subject); // empty payload
  const msgs = await take(sub, 21);
  equal(msgs.map((m) => m.string()), [...range(20).map((i) => `m${i}`), ""], "payloads");
  equal(msgs.map((m) => m.subject), Array(21).fill(subject), "subjects");
  sub.unsubscribe();
}

async function checkPubSubHeaders(nc) {
  const subject = `ws.hdrs.${id}`;
  const sub = nc.subscribe(`ws.hdrs.${id}.>`);
  await nc.flush();
  for (let i = 0; i < 3; i++) {
    const h = headers();
    h.set("X-Seq", `${i}`);
    h.append("X-Multi", "a");
    h.append("X-Multi", "b b");
    nc.publish(`${subject}.${i}`, `with headers ${i}`, { headers: h });
  }
  const h = headers();
  h.set("X-Only", "headers");
  nc.publish(`${subject}.3`, undefined, { headers: h }); // headers, no payload
  const msgs = await take(sub, 4);
  equal(msgs.map((m) => m.subject), [0, 1, 2, 3].map((i) => `${subject}.${i}`), "subjects");
  for (let i = 0; i < 3; i++) {
    equal(msgs[i].string(), `with headers ${i}`, "payload");
    equal(msgs[i].headers?.get("X-Seq"), `${i}`, "X-Seq");
    equal(msgs[i].headers?.values("X-Multi"), ["a", "b b"], "X-Multi");
  }
  equal([msgs[3].data.length, msgs[3].headers?.get("X-Only")], [0, "headers"], "headers only");
  sub.unsubscribe();
}

async function checkPubSubBinaryLarge(nc) {
  // Every byte value, and payloads across the 125-byte and 64 KiB WebSocket length encodings.
  const subject = `ws.bin.${id}`;
  const sub = nc.subscribe(subject);
  await nc.flush();
  const payloads = [125, 126, 256, 65535, 65536, 300_000].map((n) =>
    new Uint8Array(n).map((_, i) => (i * 7 + n) % 256),
  );
  payloads.unshift(new Uint8Array(256).map((_, i) => i));
  for (const p of payloads) nc.publish(subject, p);
  const msgs = await take(sub, payloads.length);
  msgs.forEach((m, i) => {
    const [got, want] = [m.data, payloads[i]];
    if (got.length !== want.length || got.some((b, j) => b !== want[j])) {
      throw new Error(`payload ${i} (${want.length} bytes) differs, got ${got.length} bytes`);
    }
  });
  sub.unsubscribe();
}

async function checkRequestReply(nc) {
  const subject = `ws.svc.${id}`;
  const svc = nc.subscribe(subject, {
    callback: (err, m) => {
      if (!err) m.respond(`echo:${m.string()}:${m.headers?.get("X-Req") ?? "-"}`);
    },
  });
  await nc.flush();
  const replies = [];
  for (let i = 0; i < 3; i++) {
    const h = headers();
    h.set("X-Req", `h${i}`);
    const opts = { timeout: MSG_TIMEOUT, headers: i === 2 ? h : undefined };
    const r = await nc.request(subject, `q${i}`, opts);
    replies.push(r.string());
  }
  equal(replies, ["echo:q0:-", "echo:q1:-", "echo:q2:h2"], "replies");
  // Concurrent requests share the connection's inbox subscription.
  const many = await Promise.all(
    range(10).map((i) => nc.request(subject, `c${i}`, { timeout: MSG_TIMEOUT })),
  );
  equal(many.map((r) => r.string()), range(10).map((i) => `echo:c${i}:-`), "concurrent");
  svc.unsubscribe();
  // Nobody listening: the server answers with a 503 status, which the client reports.
  const nobody = nc.request(`ws.nobody.${id}`, "x", { timeout: MSG_TIMEOUT });
  const err = await rejects(nobody, "no responders");
  if (!/no responders/i.test(`${err?.message}`)) throw new Error(`no-responders error: ${err}`);
}

async function checkJetStreamPublish(nc) {
  const jsm = await jetstreamManager(nc);
  const js = jetstream(nc);
  const name = `WS_${id}`;
  await jsm.streams.add({ name, subjects: [`ws.js.${id}.>`] });
  const N = 10;
  const acks = [];
  for (let i = 1; i <= N; i++) {
    acks.push(await js.publish(`ws.js.${id}.${i}`, enc.encode(`js${i}`)));
  }
  equal(acks.map((a) => a.seq), range(N).map((i) => i + 1), "ack seqs");
  equal([...new Set(acks.map((a) => a.stream))], [name], "ack streams");
  const si = await jsm.streams.info(name);
  equal([si.state.messages, si.state.first_seq, si.state.last_seq], [N, 1, N], "stream state");
  const m = await jsm.streams.getMessage(name, { seq: 3 });
  equal([m.subject, m.string()], [`ws.js.${id}.3`, "js3"], "stored message 3");
  equal(await jsm.streams.delete(name), true, "stream delete");
}

async function checkKvPutGetWatch(nc) {
  const kvm = new Kvm(nc);
  const kv = await kvm.create(`ws_${id}`, { history: 5 });
  const w = await kv.watch();
  const revs = [await kv.put("a", "1"), await kv.put("b", "2"), await kv.put("a", "3")];
  equal(revs, [1, 2, 3], "put revisions");
  const [a, b] = [await kv.get("a"), await kv.get("b")];
  equal([a.string(), a.revision, b.string(), b.revision], ["3", 3, "2", 2], "get");
  equal(await kv.get("missing"), null, "missing key");
  const seen = await take(w, 3);
  equal(seen.map((e) => [e.key, e.string(), e.revision, e.operation]), [
    ["a", "1", 1, "PUT"],
    ["b", "2", 2, "PUT"],
    ["a", "3", 3, "PUT"],
  ], "watch");
  await kv.delete("b");
  const [del] = await take(w, 1);
  equal([del.key, del.operation, del.revision], ["b", "DEL", 4], "watched delete");
  w.stop();
  equal(await kv.destroy(), true, "bucket destroy");
}

const CHECKS = {
  pubsub_order: checkPubSubOrder,
  pubsub_headers: checkPubSubHeaders,
  pubsub_binary_large: checkPubSubBinaryLarge,
  request_reply: checkRequestReply,
  jetstream_publish: checkJetStreamPublish,
  kv_put_get_watch: checkKvPutGetWatch,
};

export async function runScenarios(nc, log) {
  let passed = 0;
  for (const [name, check] of Object.entries(CHECKS)) {
    try {
      await withTimeout(check(nc), CHECK_TIMEOUT, name);
    } catch (err) {
      throw new Error(`check ${name} failed: ${err?.message ?? err}`, { cause: err });
    }
    log(`ok ${name}`);
    passed++;
  }
  return passed;
}
