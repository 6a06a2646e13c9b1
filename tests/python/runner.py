"""Runs a suite's checks in order against a server URL: one line per check, stop at the first
failure. Each check is an async function taking the URL, bounded by a per-check timeout."""

import asyncio
import sys


async def run(checks, url, timeout):
    for check in checks:
        name = check.__name__.removeprefix("check_")
        try:
            await asyncio.wait_for(check(url), timeout)
        except BaseException as e:  # noqa: BLE001 - report anything, then stop
            print(f"FAIL {name}: {type(e).__name__}: {e!r}", flush=True)
            return 1
        print(f"ok {name}", flush=True)
    print(f"all {len(checks)} checks ok", flush=True)
    return 0


def main(checks, timeout, doc):
    """Entry point: `python <suite>.py nats://127.0.0.1:<port>`; exits non-zero on failure."""
    if len(sys.argv) != 2:
        print(doc, file=sys.stderr)
        sys.exit(2)
    sys.exit(asyncio.run(run(checks, sys.argv[1], timeout)))
