"""JetStream checks with the nats-py client against a causeway server.

Usage: python js_suite.py nats://127.0.0.1:PORT

Prints one line per check ("ok <name>") and exits non-zero on the first failure.
Run by tests/python_clients.rs.
"""

import asyncio

import nats

import runner
from nats.js import api
from nats.js.errors import APIError, NotFoundError

CHECK_TIMEOUT = 20  # seconds, per check
MSG_TIMEOUT = 5  # seconds, per awaited message


async def connect(url):
    return await nats.connect(url, allow_reconnect=False, connect_timeout=5)


async def fresh_stream(js, name, subjects, **kwargs):
    try:
        await js.delete_stream(name)
    except NotFoundError:
        pass
    return await js.add_stream(name=name, subjects=subjects, **kwargs)


async def check_streams(url):
    nc = await connect(url)
    js = nc.jetstream()
    info = await fresh_stream(js, "PYS", ["pys.>"], max_msgs=100)
    assert info.config.name == "PYS", info
    assert info.config.max_msgs == 100, info.config
    assert info.config.storage == api.StorageType.FILE, info.config
    assert info.config.num_replicas == 1, info.config
    names = await js.streams_info()
    assert "PYS" in [s.config.name for s in names], names
    found = await js.find_stream_name_by_subject("pys.anything")
    assert found == "PYS", found
    try:
        await js.stream_info("PY_NOPE")
    except NotFoundError as e:
        assert e.err_code == 10059, e
    else:
        raise AssertionError("stream_info of a missing stream succeeded")
    assert await js.delete_stream("PYS")
    await nc.close()


async def check_publish_acks(url):
    nc = await connect(url)
    js = nc.jetstream()
    await fresh_stream(js, "PYP", ["pyp.>"])
    for i in range(1, 6):
        ack = await js.publish("pyp.a", f"m{i}".encode())
        assert ack.stream == "PYP" and ack.seq == i, ack
    futures = [await js.publish_async("pyp.b", f"async{i}".encode()) for i in range(20)]
    acks = await asyncio.wait_for(asyncio.gather(*futures), MSG_TIMEOUT)
    assert sorted(a.seq for a in acks) == list(range(6, 26)), acks
    info = await js.stream_info("PYP")
    assert info.state.messages == 25, info.state
    msg = await js.get_msg("PYP", seq=3)
    assert msg.data == b"m3", msg
    last = await js.get_last_msg("PYP", "pyp.a")
    assert last.seq == 5 and last.data == b"m5", last
    try:
        await js.publish("pyp.a", b"x", stream="OTHER")
    except APIError as e:
        assert e.err_code == 10060, e
    else:
        raise AssertionError("expected-stream mismatch was accepted")
    await nc.close()


async def check_dedup(url):
    nc = await connect(url)
    js = nc.jetstream()
    await fresh_stream(js, "PYD", ["pyd"])
    first = await js.publish("pyd", b"one", headers={"Nats-Msg-Id": "abc"})
    again = await js.publish("pyd", b"two", headers={"Nats-Msg-Id": "abc"})
    assert not first.duplicate, first
    assert again.duplicate and again.seq == first.seq, again
    other = await js.publish("pyd", b"three", headers={"Nats-Msg-Id": "def"})
    assert other.seq == first.seq + 1 and not other.duplicate, other
    info = await js.stream_info("PYD")
    assert info.state.messages == 2, info.state
    await nc.close()


async def check_pull_fetch_ack(url):
    nc = await connect(url)
    js = nc.jetstream()
    await fresh_stream(js, "PYF", ["pyf.>"])
    for i in range(10):
        await js.publish("pyf.x", f"m{i}".encode())
    psub = await js.pull_subscribe("pyf.>", durable="puller", stream="PYF")
    msgs = await psub.fetch(4, timeout=MSG_TIMEOUT)
    assert [m.data for m in msgs] == [f"m{i}".encode() for i in range(4)], msgs
    for m in msgs:
        assert m.metadata.stream == "PYF", m.metadata
        await m.ack_sync()
    rest = []
    while len(rest) < 6:
        rest += await psub.fetch(6 - len(rest), timeout=MSG_TIMEOUT)
    assert [m.data for m in rest] == [f"m{i}".encode() for i in range(4, 10)], rest
    assert rest[-1].metadata.sequence.stream == 10, rest[-1].metadata
    for m in rest:
        await m.ack_sync()
    info = await js.consumer_info("PYF", "puller")
    assert info.num_ack_pending == 0 and info.num_pending == 0, info
    assert info.ack_floor.stream_seq == 10, info.ack_floor
    # Nothing left: fetch times out instead of returning stale messages.
    try:
        extra = await psub.fetch(1, timeout=0.5)
    except nats.errors.TimeoutError:
        extra = []
    assert extra == [], extra
    await psub.unsubscribe()
    await nc.close()


async def check_push_subscribe(url):
    nc = await connect(url)
    js = nc.jetstream()
    await fresh_stream(js, "PYH", ["pyh.>"])
    for i in range(3):
        await js.publish("pyh.x", f"p{i}".encode())
    sub = await js.subscribe("pyh.>", durable="pusher", manual_ack=True)
    got = []
    for _ in range(3):
        m = await sub.next_msg(timeout=MSG_TIMEOUT)
        got.append(m.data)
        await m.ack()
    assert got == [b"p0", b"p1", b"p2"], got
    await js.publish("pyh.y", b"live")
    m = await sub.next_msg(timeout=MSG_TIMEOUT)
    assert m.data == b"live" and m.subject == "pyh.y", m
    await m.ack_sync()
    info = await js.consumer_info("PYH", "pusher")
    assert info.num_ack_pending == 0, info
    await sub.unsubscribe()
    await nc.close()


async def check_ordered_consumer(url):
    nc = await connect(url)
    js = nc.jetstream()
    await fresh_stream(js, "PYO", ["pyo.>"])
    for i in range(50):
        await js.publish(f"pyo.{i % 3}", f"o{i}".encode())
    sub = await js.subscribe("pyo.>", ordered_consumer=True)
    got = [(await sub.next_msg(timeout=MSG_TIMEOUT)).data for _ in range(50)]
    assert got == [f"o{i}".encode() for i in range(50)], got
    await sub.unsubscribe()
    await nc.close()


async def check_redelivery(url):
    nc = await connect(url)
    js = nc.jetstream()
    await fresh_stream(js, "PYR", ["pyr"])
    await js.publish("pyr", b"again")
    psub = await js.pull_subscribe(
        "pyr", durable="redo", stream="PYR", config=api.ConsumerConfig(ack_wait=0.5)
    )
    first = (await psub.fetch(1, timeout=MSG_TIMEOUT))[0]
    assert first.metadata.num_delivered == 1, first.metadata
    await first.nak()
    second = (await psub.fetch(1, timeout=MSG_TIMEOUT))[0]
    assert second.data == b"again", second
    assert second.metadata.num_delivered == 2, second.metadata
    await second.ack_sync()
    await nc.close()


CHECKS = [
    check_streams,
    check_publish_acks,
    check_dedup,
    check_pull_fetch_ack,
    check_push_subscribe,
    check_ordered_consumer,
    check_redelivery,
]


if __name__ == "__main__":
    runner.main(CHECKS, CHECK_TIMEOUT, __doc__)
