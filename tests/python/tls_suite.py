"""TLS checks with the nats-py client against a causeway server that verifies client
certificates and accepts both handshake orders (`handshake_first` with a fallback).

Usage: python tls_suite.py tls://127.0.0.1:PORT CERT_DIR

CERT_DIR holds test-ca.pem (the CA) and alice-cert.pem / alice-key.pem (a client certificate
it signed). Prints one line per check ("ok <name>") and exits non-zero on the first failure.
Run by tests/python_clients.rs.
"""

import asyncio
import os
import ssl
import sys

import nats

import runner

CHECK_TIMEOUT = 15  # seconds, per check
MSG_TIMEOUT = 5  # seconds, per awaited message
CERTS = sys.argv[2] if len(sys.argv) > 2 else "."


def context(with_cert=True):
    ctx = ssl.create_default_context(cafile=os.path.join(CERTS, "test-ca.pem"))
    if with_cert:
        ctx.load_cert_chain(
            os.path.join(CERTS, "alice-cert.pem"), os.path.join(CERTS, "alice-key.pem")
        )
    return ctx


async def connect(url, **kwargs):
    return await nats.connect(url, allow_reconnect=False, connect_timeout=5, **kwargs)


async def check_upgrade_after_info(url):
    nc = await connect(url, tls=context())
    sub = await nc.subscribe("py.tls")
    await nc.publish("py.tls", b"secret")
    msg = await sub.next_msg(timeout=MSG_TIMEOUT)
    assert msg.data == b"secret", msg.data
    assert nc.connected_server_version.major >= 2
    await nc.close()


async def check_tls_handshake_first(url):
    nc = await connect(url, tls=context(), tls_handshake_first=True)

    async def echo(msg):
        await msg.respond(msg.data.upper())

    await nc.subscribe("py.echo", cb=echo)
    reply = await nc.request("py.echo", b"first", timeout=MSG_TIMEOUT)
    assert reply.data == b"FIRST", reply.data
    await nc.close()


async def check_no_client_certificate_is_refused(url):
    try:
        nc = await connect(url, tls=context(with_cert=False))
    except Exception:  # noqa: BLE001 - any failure to connect is the expected outcome
        return
    # TLS 1.3 reports a refused certificate after the handshake: the first round trip fails.
    try:
        await nc.flush(timeout=2)
    except Exception:  # noqa: BLE001
        return
    finally:
        await nc.close()
    raise AssertionError("connected without a client certificate")


CHECKS = [
    check_upgrade_after_info,
    check_tls_handshake_first,
    check_no_client_certificate_is_refused,
]


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print(__doc__, file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(runner.run(CHECKS, sys.argv[1], CHECK_TIMEOUT)))
