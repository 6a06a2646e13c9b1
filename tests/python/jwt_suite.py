"""Operator-mode checks with the nats-py client: logging in with a `.creds` file
(`user_credentials`), and a revoked user's file refused.

Usage: python jwt_suite.py nats://127.0.0.1:PORT CREDS_DIR

CREDS_DIR holds good.creds (a user of a preloaded account) and revoked.creds (a user the
account revoked). Prints one line per check ("ok <name>") and exits non-zero on the first
failure. Run by tests/python_clients.rs.
"""

import asyncio
import os
import sys

import nats

import runner

CHECK_TIMEOUT = 15  # seconds, per check
MSG_TIMEOUT = 5  # seconds, per awaited message
CREDS = sys.argv[2] if len(sys.argv) > 2 else "."


async def connect(url, name):
    return await nats.connect(
        url,
        allow_reconnect=False,
        connect_timeout=5,
        user_credentials=os.path.join(CREDS, name),
    )


async def check_creds_file_logs_in(url):
    nc = await connect(url, "good.creds")
    sub = await nc.subscribe("py.jwt")
    await nc.publish("py.jwt", b"signed with a creds file")
    msg = await sub.next_msg(timeout=MSG_TIMEOUT)
    assert msg.data == b"signed with a creds file", msg.data
    await nc.close()


async def check_revoked_user_is_refused(url):
    try:
        nc = await connect(url, "revoked.creds")
    except Exception as e:  # noqa: BLE001 - refused, as expected, for the right reason
        assert "Authorization Violation" in str(e), repr(e)
        return
    await nc.close()
    raise AssertionError("a revoked user logged in")


CHECKS = [check_creds_file_logs_in, check_revoked_user_is_refused]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(runner.run(CHECKS, sys.argv[1], CHECK_TIMEOUT)))
