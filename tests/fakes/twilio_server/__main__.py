"""Run the fake Twilio API on its own, for trying Keybrake's Twilio support without an account.

``python -m tests.fakes.twilio_server [--port 12114]`` from the repository root
(docs/sdk-twilio.md, "Set it up"). It needs only Keybrake's runtime dependencies (aiohttp) and the
standard library. It listens on 127.0.0.1 only, prints its base URL and the Account SID and
auth token it accepts, and keeps every message and call in memory until Ctrl-C (or SIGTERM) stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from tests.fakes.twilio_server.server import FakeTwilio
from tests.fakes.twilio_server.wire import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN


async def serve(port: int) -> None:
    """Serve on 127.0.0.1:`port` (0: a free one) until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fake = FakeTwilio()
    await fake.start(port)
    print(f"fake Twilio API on {fake.base_url} (in memory; Ctrl-C stops it)", flush=True)
    print(f"Account SID {DEFAULT_ACCOUNT_SID}, auth token {DEFAULT_AUTH_TOKEN}", flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve; a port already in use exits 1 with the reason."""
    parser = argparse.ArgumentParser(prog="fake-twilio", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=12114, help="port on 127.0.0.1 (default 12114; 0: any)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.port))
    except OSError as exc:
        sys.exit(f"fake-twilio: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
