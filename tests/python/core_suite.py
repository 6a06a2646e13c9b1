"""Core NATS checks with the nats-py client against a causeway server.

Usage: python core_suite.py nats://127.0.0.1:PORT

Prints one line per check ("ok <name>") and exits non-zero on the first failure.
Run by tests/python_clients.rs.
"""

import asyncio

import nats

import runner
from nats.errors import NoRespondersError

CHECK_TIMEOUT = 15  # seconds, per check
MSG_TIMEOUT = 5  # seconds, per awaited message


async def connect(url, **kwargs):
    return await nats.connect(
        url, allow_reconnect=False, connect_timeout=5, **kwargs
    )


async def expect_none(sub, wait=0.2):
    """Asserts that `sub` receives nothing within `wait` seconds."""
    try:
        msg = await sub.next_msg(timeout=wait)
    except nats.errors.TimeoutError:
        return
    raise AssertionError(f"unexpected message on {msg.subject}: {msg.data!r}")


async def check_pub_sub(url):
    nc = await connect(url)
    other = await connect(url)
    sub = await nc.subscribe("py.greet")
    await nc.flush()
    await other.publish("py.greet", b"hello", reply="py.reply")
    await other.flush()
    msg = await sub.next_msg(timeout=MSG_TIMEOUT)
    assert msg.subject == "py.greet", msg.subject
    assert msg.data == b"hello", msg.data
    assert msg.reply == "py.reply", msg.reply
    await expect_none(sub)
    await nc.close()
    await other.close()


async def check_wildcards(url):
    nc = await connect(url)
    subjects = ["foo", "foo.bar", "foo.baz", "a.bar", "foo.bar.baz", "foo.x.baz"]
    table = {
        "foo.*": ["foo.bar", "foo.baz"],
        "*.bar": ["foo.bar", "a.bar"],
        "foo.>": ["foo.bar", "foo.baz", "foo.bar.baz", "foo.x.baz"],
        ">": subjects,
        "foo.*.baz": ["foo.bar.baz", "foo.x.baz"],
        "*": ["foo"],
        "foo.bar": ["foo.bar"],
    }
    subs = {pat: await nc.subscribe(pat) for pat in table}
    await nc.flush()
    for s in subjects:
        await nc.publish(s, s.encode())
    await nc.flush()
    for pat, expected in table.items():
        got = []
        for _ in expected:
            msg = await subs[pat].next_msg(timeout=MSG_TIMEOUT)
            assert msg.data == msg.subject.encode()
            got.append(msg.subject)
        assert got == expected, f"{pat}: got {got}, want {expected}"
        await expect_none(subs[pat], 0.05)
    await nc.close()


async def check_queue_groups(url):
    a = await connect(url)
    b = await connect(url)
    pub = await connect(url)
    counts = [0, 0, 0, 0]
    seen = []
    done = asyncio.Event()
    total = 200

    def handler(idx):
        async def cb(msg):
            counts[idx] += 1
            seen.append(msg.data)
            if len(seen) >= total:
                done.set()

        return cb

    for idx, nc in enumerate([a, a, b, b]):
        await nc.subscribe("py.work", queue="workers", cb=handler(idx))
    await a.flush()
    await b.flush()
    for i in range(total):
        await pub.publish("py.work", str(i).encode())
    await pub.flush()
    await asyncio.wait_for(done.wait(), MSG_TIMEOUT)
    await asyncio.sleep(0.3)  # room for (wrong) duplicate deliveries
    assert len(seen) == total, f"{len(seen)} deliveries for {total} messages"
    assert len(set(seen)) == total, "a message was delivered twice"
    assert all(c > 0 for c in counts), f"a member got nothing: {counts}"
    for nc in (a, b, pub):
        await nc.close()


async def check_request_reply(url):
    svc = await connect(url)
    client = await connect(url)

    async def responder(msg):
        await msg.respond(msg.data.upper())

    await svc.subscribe("py.upper", cb=responder)
    await svc.flush()
    resp = await client.request("py.upper", b"abc", timeout=MSG_TIMEOUT)
    assert resp.data == b"ABC", resp.data
    answers = await asyncio.gather(
        *(client.request("py.upper", f"r{i}".encode(), timeout=MSG_TIMEOUT) for i in range(10))
    )
    assert [m.data for m in answers] == [f"R{i}".encode() for i in range(10)]
    await svc.close()
    await client.close()


async def check_no_responders(url):
    nc = await connect(url)
    loop = asyncio.get_running_loop()
    started = loop.time()
    try:
        await nc.request("py.nobody.home", b"?", timeout=3)
    except NoRespondersError:
        pass
    else:
        raise AssertionError("request to nobody succeeded")
    assert loop.time() - started < 2, "no-responders was not immediate"
    await nc.close()


async def check_headers(url):
    nc = await connect(url)
    sub = await nc.subscribe("py.hdr")
    await nc.flush()
    headers = {"X-One": "1", "X-Two": "two words", "Content-Type": "text/plain"}
    await nc.publish("py.hdr", b"body", headers=headers)
    msg = await sub.next_msg(timeout=MSG_TIMEOUT)
    assert msg.data == b"body", msg.data
    assert msg.headers == headers, msg.headers
    await nc.publish("py.hdr", b"", headers={"Only": "headers"})
    msg = await sub.next_msg(timeout=MSG_TIMEOUT)
    assert msg.data == b"" and msg.headers == {"Only": "headers"}, msg
    await nc.close()


async def check_large_payload(url):
    nc = await connect(url)
    assert nc.max_payload == 1024 * 1024, nc.max_payload
    sub = await nc.subscribe("py.big")
    await nc.flush()
    body = bytes(i % 251 for i in range(nc.max_payload))
    await nc.publish("py.big", body)
    msg = await sub.next_msg(timeout=MSG_TIMEOUT)
    assert msg.data == body, "payload corrupted"
    await nc.close()


async def check_no_echo(url):
    quiet = await connect(url, no_echo=True)
    other = await connect(url)
    own = await quiet.subscribe("py.echo")
    theirs = await other.subscribe("py.echo")
    await quiet.flush()
    await other.flush()
    await quiet.publish("py.echo", b"mine")
    await quiet.flush()
    assert (await theirs.next_msg(timeout=MSG_TIMEOUT)).data == b"mine"
    await expect_none(own)
    await other.publish("py.echo", b"theirs")
    await other.flush()
    assert (await own.next_msg(timeout=MSG_TIMEOUT)).data == b"theirs"
    await quiet.close()
    await other.close()


async def check_auto_unsubscribe(url):
    nc = await connect(url)
    sub = await nc.subscribe("py.limited")
    await sub.unsubscribe(limit=3)
    await nc.flush()
    for i in range(6):
        await nc.publish("py.limited", str(i).encode())
    await nc.flush()
    got = [(await sub.next_msg(timeout=MSG_TIMEOUT)).data for _ in range(3)]
    assert got == [b"0", b"1", b"2"], got
    await asyncio.sleep(0.2)
    assert sub.pending_msgs == 0, f"{sub.pending_msgs} extra messages"
    await nc.close()


CHECKS = [
    check_pub_sub,
    check_wildcards,
    check_queue_groups,
    check_request_reply,
    check_no_responders,
    check_headers,
    check_large_payload,
    check_no_echo,
    check_auto_unsubscribe,
]


if __name__ == "__main__":
    runner.main(CHECKS, CHECK_TIMEOUT, __doc__)
