// Key-Value and Object Store checks with the nats.js clients (@nats-io/kv, @nats-io/obj)
// against a causeway server.
//
// Usage: node kv_suite.mjs nats://127.0.0.1:PORT
//
// Prints one line per check ("ok <name>") and exits non-zero on the first failure.
// Run by tests/node_clients.rs.

import assert from "node:assert/strict";

import { connect } from "@nats-io/transport-node";
import { jetstreamManager } from "@nats-io/jetstream";
import { Kvm, KvWatchInclude } from "@nats-io/kv";
import { Objm } from "@nats-io/obj";

const CHECK_TIMEOUT = 30_000; // ms, per check
const MSG_TIMEOUT = 5_000; // ms, per awaited update

const url = process.argv[2];
const enc = new TextEncoder();
const dec = new TextDecoder();

async function open() {
  const nc = await connect({ servers: url, reconnect: false, timeout: 5_000 });
  return { nc, kvm: new Kvm(nc), objm: new Objm(nc), jsm: await jetstreamManager(nc) };
}

function withTimeout(promise, ms, what) {
  let timer;
  const timeout = new Promise((_, reject) => {
    timer = setTimeout(() => reject(new Error(`timed out after ${ms} ms: ${what}`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

async function rejects(promise, check) {
  try {
    await promise;
  } catch (err) {
    if (check) check(err);
    return err;
  }
  assert.fail("expected a rejection");
}

// A QueuedIterator may be iterated only once: keep the one iterator per watcher.
const iterators = new WeakMap();

/** The next `n` entries of a watcher, each bounded by MSG_TIMEOUT. */
async function take(iter, n) {
  if (!iterators.has(iter)) iterators.set(iter, iter[Symbol.asyncIterator]());
  const it = iterators.get(iter);
  const out = [];
  for (let i = 0; i < n; i++) {
    const r = await withTimeout(it.next(), MSG_TIMEOUT, `entry ${i + 1} of ${n}`);
    assert.ok(!r.done, "iterator ended early");
    out.push(r.value);
  }
  return out;
}

/** Every value of a finite iterator (keys, history), bounded by MSG_TIMEOUT overall. */
async function drain(iter) {
  const out = [];
  await withTimeout(
    (async () => {
      for await (const v of iter) out.push(v);
    })(),
    MSG_TIMEOUT,
    "the end of a listing",
  );
  return out;
}

const rows = (entries) => entries.map((e) => [e.key, e.operation, dec.decode(e.value)]);

async function checkBucketLifecycle() {
  const { nc, kvm, jsm } = await open();
  const kv = await kvm.create("js_cfg", {
    history: 5,
    description: "node bucket",
    ttl: 3_600_000,
    maxValueSize: 1024,
    metadata: { owner: "node" },
  });
  const st = await kv.status();
  assert.equal(st.bucket, "js_cfg");
  assert.equal(st.history, 5);
  assert.equal(st.ttl, 3_600_000);
  assert.equal(st.description, "node bucket");
  assert.equal(st.maxValueSize, 1024);
  assert.equal(st.values, 0);
  assert.equal(st.metadata.owner, "node");
  const cfg = st.streamInfo.config;
  assert.deepEqual(cfg.subjects, ["$KV.js_cfg.>"]);
  assert.equal(cfg.allow_rollup_hdrs, true);
  assert.equal(cfg.allow_direct, true);
  assert.equal(cfg.discard, "new");
  // Creating again with the same options, and opening, both work.
  await kvm.create("js_cfg", {
    history: 5,
    description: "node bucket",
    ttl: 3_600_000,
    maxValueSize: 1024,
    metadata: { owner: "node" },
  });
  const opened = await kvm.open("js_cfg");
  await opened.put("k", "v");
  assert.equal((await kv.status()).values, 1);
  const names = [];
  for await (const s of kvm.list()) names.push(s.bucket);
  assert.ok(names.includes("js_cfg"), names);
  assert.equal(await kv.destroy(), true);
  await rejects(jsm.streams.info("KV_js_cfg"));
  await nc.close();
}

async function checkPutGetRevisions() {
  const { nc, kvm } = await open();
  const kv = await kvm.create("js_rev", { history: 10 });
  assert.equal(await kv.get("missing"), null);
  const revs = [await kv.put("color", "red"), await kv.put("size", "L"), await kv.put("color", "blue")];
  assert.deepEqual(revs, [1, 2, 3]);
  const e = await kv.get("color");
  assert.deepEqual([e.key, e.revision, e.operation, e.string()], ["color", 3, "PUT", "blue"]);
  const old = await kv.get("color", { revision: 1 });
  assert.deepEqual([old.revision, old.string()], [1, "red"]);
  await kv.put("bin", new Uint8Array([0, 255, 13, 10]));
  assert.deepEqual([...(await kv.get("bin")).value], [0, 255, 13, 10]);
  await nc.close();
}

async function checkCreateUpdateCas() {
  const { nc, kvm } = await open();
  const kv = await kvm.create("js_cas", { history: 5 });
  const r1 = await kv.create("lock", "owner-1");
  await rejects(kv.create("lock", "owner-2"));
  const r2 = await kv.update("lock", "owner-1b", r1);
  assert.equal(r2, r1 + 1);
  await rejects(kv.update("lock", "stale", r1), (err) => {
    assert.equal(err.code, 10071, `${err}`);
  });
  assert.equal((await kv.get("lock")).string(), "owner-1b");
  await kv.delete("lock");
  const r3 = await kv.create("lock", "owner-3");
  assert.ok(r3 > r2);
  assert.equal((await kv.get("lock")).string(), "owner-3");
  // Put with an expected previous revision.
  await rejects(kv.put("lock", "x", { previousSeq: r1 }));
  await kv.put("lock", "y", { previousSeq: r3 });
  await nc.close();
}

async function checkDeletePurge() {
  const { nc, kvm } = await open();
  const kv = await kvm.create("js_del", { history: 10 });
  for (const v of ["1", "2", "3"]) await kv.put("a", v);
  await kv.put("b", "x");
  await kv.delete("a");
  const del = await kv.get("a");
  assert.deepEqual([del.operation, del.revision, del.length], ["DEL", 5, 0]);
  assert.deepEqual(rows(await drain(await kv.history({ key: "a" }))), [
    ["a", "PUT", "1"],
    ["a", "PUT", "2"],
    ["a", "PUT", "3"],
    ["a", "DEL", ""],
  ]);
  await kv.put("c", "1");
  await kv.put("c", "2");
  await kv.purge("c");
  const hist = await drain(await kv.history({ key: "c" }));
  assert.deepEqual(hist.map((e) => [e.operation, e.revision]), [["PURGE", 8]]);
  const purged = await kv.purgeDeletes(0);
  assert.equal(purged.purged, 5, "a: 3 values and the marker, c: the marker");
  assert.equal((await drain(await kv.history({ key: "a" }))).length, 0);
  assert.equal(await kv.get("c"), null);
  assert.equal((await kv.status()).values, 1);
  await nc.close();
}

async function checkKeysHistory() {
  const { nc, kvm } = await open();
  const kv = await kvm.create("js_keys", { history: 3 });
  assert.deepEqual(await drain(await kv.keys()), []);
  for (const k of ["users.ann", "users.bo", "groups.x", "top"]) await kv.put(k, k);
  for (let i = 0; i < 5; i++) await kv.put("top", `${i}`);
  await kv.delete("groups.x");
  assert.deepEqual((await drain(await kv.keys())).sort(), ["top", "users.ann", "users.bo"]);
  assert.deepEqual((await drain(await kv.keys("users.*"))).sort(), ["users.ann", "users.bo"]);
  assert.deepEqual(
    (await drain(await kv.keys(["users.ann", "groups.>", "top"]))).sort(),
    ["top", "users.ann"],
  );
  const hist = await drain(await kv.history({ key: "top" }));
  assert.deepEqual(hist.map((e) => e.string()), ["2", "3", "4"]);
  assert.deepEqual(hist.map((e) => e.revision), [7, 8, 9]);
  await nc.close();
}

async function checkWatch() {
  const { nc, kvm } = await open();
  const kv = await kvm.create("js_watch", { history: 5 });
  await kv.put("a", "a1");
  await kv.put("a", "a2");
  await kv.put("b", "b1");
  const w = await kv.watch();
  const initial = await take(w, 2);
  assert.deepEqual(rows(initial), [["a", "PUT", "a2"], ["b", "PUT", "b1"]]);
  assert.deepEqual(initial.map((e) => e.isUpdate), [false, true]);
  await kv.put("c", "c1");
  await kv.delete("a");
  await kv.purge("b");
  const live = await take(w, 3);
  assert.deepEqual(live.map((e) => [e.key, e.operation, e.revision]), [
    ["c", "PUT", 4],
    ["a", "DEL", 5],
    ["b", "PURGE", 6],
  ]);
  assert.ok(live.every((e) => e.isUpdate));
  w.stop();

  // Updates only, several keys.
  const upd = await kv.watch({ key: ["c", "d.*"], include: KvWatchInclude.UpdatesOnly });
  await kv.put("a", "ignored");
  await kv.put("d.1", "d");
  await kv.put("c", "c2");
  assert.deepEqual(rows(await take(upd, 2)), [["d.1", "PUT", "d"], ["c", "PUT", "c2"]]);
  upd.stop();

  // All history of one key, and resuming from a revision.
  const all = await kv.watch({ key: "c", include: KvWatchInclude.AllHistory });
  assert.deepEqual((await take(all, 2)).map((e) => e.revision), [4, 9]);
  all.stop();
  const resumed = await kv.watch({ resumeFromRevision: 7 });
  assert.deepEqual((await take(resumed, 3)).map((e) => e.revision), [7, 8, 9]);
  resumed.stop();
  await nc.close();
}

async function checkObjectStore() {
  const { nc, objm, jsm } = await open();
  const os = await objm.create("js_obj", { description: "node objects" });
  const big = new Uint8Array(3 * 1024 * 1024 + 17).map((_, i) => i % 251);
  const info = await os.putBlob({ name: "big.bin", description: "big" }, big);
  assert.equal(info.size, big.length);
  assert.ok(info.chunks >= 25, `chunks ${info.chunks}`);
  await os.putBlob({ name: "small.txt" }, enc.encode("hello"));
  await os.putBlob({ name: "empty" }, new Uint8Array(0));
  assert.deepEqual(await os.getBlob("big.bin"), big);
  assert.equal(dec.decode(await os.getBlob("small.txt")), "hello");
  assert.equal((await os.getBlob("empty")).length, 0);
  const meta = await os.info("small.txt");
  assert.deepEqual([meta.name, meta.size, meta.bucket, meta.deleted], ["small.txt", 5, "js_obj", false]);
  const names = async () => (await os.list()).filter((i) => !i.deleted).map((i) => i.name).sort();
  assert.deepEqual(await names(), ["big.bin", "empty", "small.txt"]);

  const w = await os.watch({ includeHistory: true });
  await take(w, 3); // current state
  await os.delete("small.txt");
  const [gone] = await take(w, 1);
  assert.deepEqual([gone.name, gone.deleted], ["small.txt", true]);
  assert.equal(await os.get("small.txt"), null);
  assert.deepEqual(await names(), ["big.bin", "empty"]);
  w.stop();

  // Links, metadata update, replacing, sealing.
  await os.link("alias", await os.info("big.bin"));
  assert.deepEqual(await os.getBlob("alias"), big);
  await os.update("empty", { name: "empty", description: "nothing", metadata: { k: "v" } });
  const upd = await os.info("empty");
  assert.deepEqual([upd.description, upd.metadata.k], ["nothing", "v"]);
  await os.putBlob({ name: "big.bin" }, enc.encode("now small"));
  assert.equal(dec.decode(await os.getBlob("big.bin")), "now small");
  const st = await os.seal();
  assert.equal(st.sealed, true);
  await rejects(os.putBlob({ name: "more" }, enc.encode("no")));
  assert.equal(dec.decode(await os.getBlob("big.bin")), "now small");
  assert.equal(await os.destroy(), true);
  await rejects(jsm.streams.info("OBJ_js_obj"));
  await nc.close();
}

const CHECKS = {
  bucket_lifecycle: checkBucketLifecycle,
  put_get_revisions: checkPutGetRevisions,
  create_update_cas: checkCreateUpdateCas,
  delete_purge: checkDeletePurge,
  keys_history: checkKeysHistory,
  watch: checkWatch,
  object_store: checkObjectStore,
};

for (const [name, check] of Object.entries(CHECKS)) {
  try {
    await withTimeout(check(), CHECK_TIMEOUT, name);
  } catch (err) {
    console.log(`FAIL ${name}: ${err?.stack ?? err}`);
    process.exit(1);
  }
  console.log(`ok ${name}`);
}
console.log(`all ${Object.keys(CHECKS).length} checks passed`);
process.exit(0);
