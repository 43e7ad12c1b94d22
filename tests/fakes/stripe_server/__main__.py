"""Run the fake Stripe API on its own, for trying Keybrake without a Stripe account or internet.

``python -m tests.fakes.stripe_server [--port 12111] [--secret sk_test_…]`` from the repository
root (``scripts/fake-stripe`` wraps it). It needs only Keybrake's runtime dependencies (aiohttp)
and the standard library. It listens on 127.0.0.1 only, prints its base URL and the one secret
key it accepts, and keeps every object in memory until Ctrl-C (or SIGTERM) stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys

from tests.fakes.stripe_server.params import DEFAULT_SECRET
from tests.fakes.stripe_server.server import FakeStripe


async def serve(port: int, secret: str) -> None:
    """Serve on 127.0.0.1:`port` (0: a free one) until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    fake = FakeStripe(secret=secret)
    await fake.start(port)
    print(f"fake Stripe API on {fake.base_url} (in memory; Ctrl-C stops it)", flush=True)
    print(f"secret key it accepts: {secret}", flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    """Parse the command line and serve; a port already in use exits 1 with the reason."""
    parser = argparse.ArgumentParser(prog="fake-stripe", description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=12111, help="port on 127.0.0.1 (default 12111; 0: any)")
    parser.add_argument("--secret", default=DEFAULT_SECRET, help=f"secret key to accept (default {DEFAULT_SECRET})")
    args = parser.parse_args(argv)
    try:
        asyncio.run(serve(args.port, args.secret))
    except OSError as exc:
        sys.exit(f"fake-stripe: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")


if __name__ == "__main__":
    main()
