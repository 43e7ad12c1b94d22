"""What the sandbox vendors share: an aiohttp server on a free loopback port, in the demo's loop."""

from __future__ import annotations

import secrets
import string
import time

from aiohttp import web

_ALNUM = string.ascii_letters + string.digits


def object_id(prefix: str, length: int = 24) -> str:
    """A vendor-style id: `prefix` then `length` random letters and digits (Stripe's `pi_…`, `re_…`)."""
    return prefix + "".join(secrets.choice(_ALNUM) for _ in range(length))


def now_s() -> int:
    """Unix time in whole seconds (Stripe's `created`)."""
    return int(time.time())


class Sandbox:
    """One sandbox vendor: `routes` is filled by the subclass; `start()` listens on 127.0.0.1 at a
    free port (read back from `base_url`), `stop()` closes it."""

    name = "sandbox"

    def __init__(self) -> None:
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    def routes(self, app: web.Application) -> None:
        raise NotImplementedError

    @property
    def base_url(self) -> str:
        """`http://127.0.0.1:<port>`; raises RuntimeError before `start()`."""
        if self._port is None:
            raise RuntimeError(f"the {self.name} sandbox is not started")
        return f"http://127.0.0.1:{self._port}"

    async def start(self) -> None:
        """Listen on a free loopback port (the operating system picks it: no port in use is touched)."""
        app = web.Application()
        self.routes(app)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        """Close the listener (idempotent)."""
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()
