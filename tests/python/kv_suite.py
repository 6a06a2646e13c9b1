"""Key-Value and Object Store checks with the nats-py client against a causeway server.

Usage: python kv_suite.py nats://127.0.0.1:PORT

Prints one line per check ("ok <name>") and exits non-zero on the first failure.
Run by tests/python_kv.rs.
"""


import nats

import runner
from nats.js import api
from nats.js.errors import (
    BucketNotFoundError,
    KeyNotFoundError,
    KeyWrongLastSequenceError,
    NoKeysError,
    ObjectNotFoundError,
)

CHECK_TIMEOUT = 30  # seconds, per check
MSG_TIMEOUT = 5  # seconds, per awaited update


async def connect(url):
    nc = await nats.connect(url, allow_reconnect=False, connect_timeout=5)
    return nc, nc.jetstream(timeout=5)


async def expect(exc_type, coro):
    try:
        await coro
    except exc_type as err:
        return err
    raise AssertionError(f"expected {exc_type.__name__}")


async def check_bucket_lifecycle(url):
    nc, js = await connect(url)
    kv = await js.create_key_value(
        bucket="py_cfg", history=5, description="python bucket", ttl=3600
    )
    status = await kv.status()
    assert status.bucket == "py_cfg", status.bucket
    assert status.history == 5, status.history
    assert status.ttl == 3600, status.ttl
    assert status.values == 0, status.values
    cfg = status.stream_info.config
    assert cfg.name == "KV_py_cfg", cfg.name
    assert cfg.subjects == ["$KV.py_cfg.>"], cfg.subjects
    assert cfg.description == "python bucket", cfg.description
    assert cfg.allow_rollup_hdrs and cfg.deny_delete, cfg
    # Opening it again (and creating it again with the same config) works.
    again = await js.key_value("py_cfg")
    await again.put("k", b"v")
    await js.create_key_value(
        bucket="py_cfg", history=5, description="python bucket", ttl=3600
    )
    assert (await kv.status()).values == 1
    assert await js.delete_key_value("py_cfg")
    await expect(BucketNotFoundError, js.key_value("py_cfg"))
    await nc.close()


async def check_put_get_revisions(url):
    nc, js = await connect(url)
    kv = await js.create_key_value(bucket="py_rev", history=10)
    r1 = await kv.put("color", b"red")
    r2 = await kv.put("size", b"L")
    r3 = await kv.put("color", b"blue")
    assert (r1, r2, r3) == (1, 2, 3), (r1, r2, r3)
    e = await kv.get("color")
    assert (e.key, e.value, e.revision) == ("color", b"blue", 3), e
    old = await kv.get("color", revision=1)
    assert (old.value, old.revision) == (b"red", 1), old
    await expect(KeyNotFoundError, kv.get("missing"))
    await nc.close()


async def check_create_update_cas(url):
    nc, js = await connect(url)
    kv = await js.create_key_value(bucket="py_cas", history=5)
    r1 = await kv.create("lock", b"owner-1")
    await expect(KeyWrongLastSequenceError, kv.create("lock", b"owner-2"))
    r2 = await kv.update("lock", b"owner-1b", last=r1)
    assert r2 == r1 + 1, (r1, r2)
    err = await expect(KeyWrongLastSequenceError, kv.update("lock", b"x", last=r1))
    assert "10071" in str(err) or "wrong last sequence" in str(err).lower(), err
    assert (await kv.get("lock")).value == b"owner-1b"
    # Create works again after a delete.
    await kv.delete("lock")
    r3 = await kv.create("lock", b"owner-3")
    assert r3 > r2, (r2, r3)
    assert (await kv.get("lock")).value == b"owner-3"
    await nc.close()


async def check_delete_purge(url):
    nc, js = await connect(url)
    kv = await js.create_key_value(bucket="py_del", history=10)
    for v in (b"1", b"2", b"3"):
        await kv.put("a", v)
    await kv.put("b", b"x")
    await kv.delete("a")
    err = await expect(KeyNotFoundError, kv.get("a"))
    assert err.op == "DEL", err.op
    hist = await kv.history("a")
    ops = [(h.value, h.operation) for h in hist]
    assert ops == [(b"1", None), (b"2", None), (b"3", None), (b"", "DEL")], ops
    await kv.put("c", b"1")
    await kv.put("c", b"2")
    await kv.purge("c")
    hist = await kv.history("c")
    assert [(h.operation, h.revision) for h in hist] == [("PURGE", 8)], hist
    # Removing the delete markers leaves no trace of those keys.
    await kv.purge_deletes(olderthan=0)
    await expect(NoKeysError, kv.history("a"))
    await expect(NoKeysError, kv.history("c"))
    assert (await kv.status()).values == 1
    await nc.close()


async def check_keys_history(url):
    nc, js = await connect(url)
    kv = await js.create_key_value(bucket="py_keys", history=3)
    await expect(NoKeysError, kv.keys())
    for k in ("users.ann", "users.bo", "groups.x", "top"):
        await kv.put(k, k.encode())
    for i in range(5):
        await kv.put("top", str(i).encode())
    await kv.delete("groups.x")
    keys = sorted(await kv.keys())
    assert keys == ["top", "users.ann", "users.bo"], keys
    users = sorted(await kv.keys(filters=["users."]))
    assert users == ["users.ann", "users.bo"], users
    hist = await kv.history("top")
    assert [h.value for h in hist] == [b"2", b"3", b"4"], hist
    revs = [h.revision for h in hist]
    assert revs == sorted(revs) and revs[-1] == 9, revs
    await nc.close()


async def check_watch(url):
    nc, js = await connect(url)
    kv = await js.create_key_value(bucket="py_watch", history=5)
    await kv.put("a", b"a1")
    await kv.put("a", b"a2")
    await kv.put("b", b"b1")
    watcher = await kv.watchall()
    initial = []
    while True:
        e = await watcher.updates(timeout=MSG_TIMEOUT)
        if e is None:
            break
        initial.append((e.key, e.value, e.revision))
    assert initial == [("a", b"a2", 2), ("b", b"b1", 3)], initial
    await kv.put("c", b"c1")
    await kv.delete("a")
    await kv.purge("b")
    live = []
    for _ in range(3):
        e = await watcher.updates(timeout=MSG_TIMEOUT)
        live.append((e.key, e.operation, e.revision))
    assert live == [("c", None, 4), ("a", "DEL", 5), ("b", "PURGE", 6)], live
    await watcher.stop()
    # A single-key watcher with history.
    one = await kv.watch("c", include_history=True)
    e = await one.updates(timeout=MSG_TIMEOUT)
    assert (e.key, e.value) == ("c", b"c1"), e
    assert await one.updates(timeout=MSG_TIMEOUT) is None
    await kv.put("c", b"c2")
    e = await one.updates(timeout=MSG_TIMEOUT)
    assert (e.value, e.revision) == (b"c2", 7), e
    await one.stop()
    await nc.close()


async def check_object_store(url):
    nc, js = await connect(url)
    obs = await js.create_object_store("py_obj", description="python objects")
    big = bytes(i % 251 for i in range(3 * 1024 * 1024 + 17))
    info = await obs.put("big.bin", big)
    assert info.size == len(big), info.size
    assert info.chunks == (len(big) + 128 * 1024 - 1) // (128 * 1024), info.chunks
    await obs.put("small.txt", b"hello")
    await obs.put("empty", b"")
    got = await obs.get("big.bin")
    assert got.data == big, "content differs"
    assert (await obs.get("small.txt")).data == b"hello"
    assert (await obs.get("empty")).data == b""
    meta = await obs.get_info("small.txt")
    assert (meta.name, meta.size, meta.bucket) == ("small.txt", 5, "py_obj"), meta
    names = sorted(i.name for i in await obs.list(ignore_deletes=True))
    assert names == ["big.bin", "empty", "small.txt"], names
    await obs.delete("small.txt")
    await expect(ObjectNotFoundError, obs.get("small.txt"))
    names = sorted(i.name for i in await obs.list(ignore_deletes=True))
    assert names == ["big.bin", "empty"], names
    # Replacing an object keeps only the new chunks.
    await obs.put("big.bin", b"now small")
    assert (await obs.get("big.bin")).data == b"now small"
    si = await js.stream_info("OBJ_py_obj")
    assert si.state.messages == 4, si.state  # 1 chunk + 3 meta (one deleted)
    assert await js.delete_object_store("py_obj")
    await expect(BucketNotFoundError, js.object_store("py_obj"))
    await nc.close()


CHECKS = [
    check_bucket_lifecycle,
    check_put_get_revisions,
    check_create_update_cas,
    check_delete_purge,
    check_keys_history,
    check_watch,
    check_object_store,
]


if __name__ == "__main__":
    runner.main(CHECKS, CHECK_TIMEOUT, __doc__)
