"""Run the fake Resend API on its own, for trying Keybrake's Resend support without an account.

``python -m tests.fakes.resend_server [--port 12113] [--api-key re_…]`` from the repository root
(docs/sdk-resend.md, "Set it up"). It needs only Keybrake's runtime dependencies (aiohttp) and the
standard library. It listens on 127.0.0.1 only, prints its base URL and the one API key it
accepts, and keeps every email in memory until Ctrl-C (or SIGTERM) stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from tests.fakes.resend_server.server import FakeResend
from tests.fakes.resend_server.wire import DEFAULT_API_KEY


async def serve(port: int, api_key: str) -> None:
    """Serve on 127.0.0.1:`port` (0: a free one) until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fake = FakeResend(api_key=api_key)
    await fake.start(port)
    print(f"fake Resend API on {fake.base_url} (in memory; Ctrl-C stops it)", flush=True)
    print(f"API key it accepts: {api_key}", flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve; a port already in use exits 1 with the reason."""
    parser = argparse.ArgumentParser(prog="fake-resend", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=12113, help="port on 127.0.0.1 (default 12113; 0: any)")
    parser.add_argument("--api-key", default=DEFAULT_API_KEY, help="the API key to accept (default: the fake's own)")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.port, args.api_key))
    except OSError as exc:
        sys.exit(f"fake-resend: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
