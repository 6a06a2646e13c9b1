"""nkey user checks with the nats-py client against a causeway server whose only user is an
nkey user allowed to publish to ok.>.

Usage: python nkey_suite.py nats://127.0.0.1:PORT SEED

SEED is the user's seed (SU...). Prints one line per check ("ok <name>") and exits non-zero on
the first failure. Run by tests/python_clients.rs.
"""

import asyncio
import sys

import nacl.signing  # nkeys' own dependency
import nats
import nkeys

import runner

CHECK_TIMEOUT = 15  # seconds, per check
MSG_TIMEOUT = 5  # seconds, per awaited message
SEED = sys.argv[2] if len(sys.argv) > 2 else ""


async def connect(url, **kwargs):
    return await nats.connect(url, allow_reconnect=False, connect_timeout=5, **kwargs)


async def check_signs_the_nonce(url):
    nc = await connect(url, nkeys_seed_str=SEED)
    sub = await nc.subscribe("ok.py")
    await nc.publish("ok.py", b"signed")
    msg = await sub.next_msg(timeout=MSG_TIMEOUT)
    assert msg.data == b"signed", msg.data
    await nc.close()


async def check_an_unknown_key_is_refused(url):
    # A fresh user seed: same kind of key, not configured on the server.
    raw = nacl.signing.SigningKey.generate().encode()
    stranger = nkeys.encode_seed(raw, nkeys.PREFIX_BYTE_USER).decode()
    assert stranger != SEED
    try:
        nc = await connect(url, nkeys_seed_str=stranger)
    except Exception as e:  # noqa: BLE001 - refused, as expected, for the right reason
        assert "Authorization Violation" in str(e), repr(e)
        return
    await nc.close()
    raise AssertionError("an unknown nkey signed in")


CHECKS = [check_signs_the_nonce, check_an_unknown_key_is_refused]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(runner.run(CHECKS, sys.argv[1], CHECK_TIMEOUT)))
