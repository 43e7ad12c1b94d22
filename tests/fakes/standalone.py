"""Run one fake vendor API on its own, from the command line (the docs' examples use these in
place of the real vendor): `python -m tests.fakes.<vendor>_server [--port N]`.

It needs only Keybrake's runtime dependencies (aiohttp) and the standard library, listens on
127.0.0.1 only, prints its base URL and the credential it accepts, and keeps everything in memory
until Ctrl-C (or SIGTERM) stops it.
"""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Callable

from tests.fakes.base import FakeServer


async def serve(fake: FakeServer, port: int, accepts: str) -> None:
    """Serve `fake` on 127.0.0.1:`port` (0: a free one) until SIGINT or SIGTERM, after printing
    its base URL and `accepts` (what credential it takes)."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await fake.start(port)
    print(f"{fake.name} API on {fake.base_url} (in memory; Ctrl-C stops it)", flush=True)
    print(f"it accepts {accepts}", flush=True)
    try:
        await stop.wait()
    finally:
        await fake.stop()


def main(
    prog: str, default_port: int, make: Callable[[], tuple[FakeServer, str]], argv: list[str] | None = None
) -> None:
    """Parse `--port` (default `default_port`) and serve the fake `make()` returns with the
    description of the credential it accepts; a port already in use exits 1 with the reason."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("--port", type=int, default=default_port, help=f"port on 127.0.0.1 (default {default_port})")
    args = parser.parse_args(argv)
    fake, accepts = make()
    try:
        asyncio.run(serve(fake, args.port, accepts))
    except OSError as exc:
        sys.exit(f"{prog}: cannot listen on 127.0.0.1:{args.port}: {exc.strerror or exc}")
