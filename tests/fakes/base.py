"""What every fake vendor server shares: an aiohttp app on loopback, request recording, forced
answers and delays, and a wrapper that runs it on its own event loop in a background thread."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Generic, Protocol, Self, TypeVar

from aiohttp import web

T = TypeVar("T")

# A forced answer: (status, JSON body), or (status, JSON body, extra response headers).
ForcedAnswer = tuple[int, dict[str, Any]] | tuple[int, dict[str, Any], dict[str, str]]


@dataclass
class RecordedRequest:
    """One request as it reached the fake (before auth or forced answers)."""

    method: str
    path: str
    query: str
    headers: dict[str, str]  # names lower-cased
    body: bytes
    form: dict[str, list[str]] = field(default_factory=dict)  # form bodies, parsed
    json: Any = None  # JSON bodies, parsed
    username: str | None = None  # HTTP Basic, decoded
    password: str | None = None
    arrived: float = field(default_factory=time.monotonic)  # when it reached the fake (monotonic s)


class FakeServer:
    """Lifecycle and test controls. Subclasses implement ``handle``.

    - ``delay_seconds``: sleep this long before answering any request.
    - ``hang``: an ``asyncio.Event`` or ``threading.Event``; while set here and not yet set,
      every request waits for it (a call in flight).
    - ``next_status``: queue of ``(status, json_body)`` (a fake may also honour
      ``(status, json_body, headers)``); each request pops the first one and is answered with it
      instead (after recording it, before auth). Forced answers create nothing.
    """

    name = "fake"

    def __init__(self) -> None:
        self.requests: list[RecordedRequest] = []
        self.delay_seconds: float = 0.0
        self.hang: asyncio.Event | threading.Event | None = None
        self.next_status: list[ForcedAnswer] = []
        self._runner: web.AppRunner | None = None
        self._port: int | None = None

    @property
    def port(self) -> int:
        if self._port is None:
            raise RuntimeError(f"{self.name} is not started")
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        """Listen on 127.0.0.1:`port` (0: a free port, read back from `port`)."""
        if self._runner is not None:
            raise RuntimeError(f"{self.name} is already started")
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._serve)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", port)
        await site.start()
        self._port = int(runner.addresses[0][1])
        self._runner = runner

    async def stop(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            await runner.cleanup()

    def reset(self) -> None:
        self.requests = []
        self.delay_seconds = 0.0
        self.hang = None
        self.next_status = []

    async def _serve(self, request: web.Request) -> web.Response:
        body = await request.read()
        recorded = self.record(request, body)
        self.requests.append(recorded)
        if self.delay_seconds > 0:
            await asyncio.sleep(self.delay_seconds)
        hang = self.hang
        if hang is not None:
            while not hang.is_set():  # polling works for both kinds of event
                await asyncio.sleep(0.005)
        if self.next_status:
            status, doc = self.next_status.pop(0)[:2]
            return self.reply(status, doc)
        return await self.handle(request, recorded)

    def record(self, request: web.Request, body: bytes) -> RecordedRequest:
        return RecordedRequest(
            method=request.method,
            path=request.path,
            query=request.query_string,
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )

    def reply(self, status: int, doc: Any) -> web.Response:
        raise NotImplementedError

    async def handle(self, request: web.Request, recorded: RecordedRequest) -> web.Response:
        raise NotImplementedError


class JsonFakeServer(FakeServer):
    """A fake whose vendor speaks JSON: `record` also parses the body into ``rec.json`` (``None``
    when the body is empty or not JSON, so a test can assert on malformed input), and `reply`
    answers `doc` as a JSON body with HTTP `status`."""

    def record(self, request: web.Request, body: bytes) -> RecordedRequest:
        rec = super().record(request, body)
        try:
            rec.json = json.loads(body) if body else None
        except ValueError:
            rec.json = None
        return rec

    def reply(self, status: int, doc: Any) -> web.Response:
        return web.json_response(doc, status=status)


class Serving(Protocol):
    name: str
    hang: asyncio.Event | threading.Event | None

    @property
    def base_url(self) -> str: ...
    async def start(self) -> None: ...
    async def stop(self) -> None: ...


S = TypeVar("S", bound=Serving)


class FakeThread(Generic[S]):
    """Runs a fake server in its own event loop on a background thread.

    ``with FakeThread(server) as t: ...`` — ``t.fake`` is the server, ``t.base_url`` its URL.
    """

    def __init__(self, fake: S) -> None:
        self.fake = fake
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    @property
    def base_url(self) -> str:
        return self.fake.base_url

    def start(self) -> None:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=self.fake.name, daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        try:
            self.run(self.fake.start())
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        try:
            if loop.is_running():
                asyncio.run_coroutine_threadsafe(self.fake.stop(), loop).result(10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            loop.close()
            self._loop = self._thread = None

    def run(self, coro: Awaitable[T], timeout: float = 10) -> T:
        if self._loop is None:
            raise RuntimeError("not started")

        async def wrapper() -> T:
            return await coro

        return asyncio.run_coroutine_threadsafe(wrapper(), self._loop).result(timeout)

    def hold(self) -> threading.Event:
        event = threading.Event()
        self.fake.hang = event
        return event

    def release(self) -> None:
        hang = self.fake.hang
        if isinstance(hang, threading.Event):
            hang.set()
        elif hang is not None and self._loop is not None:
            self._loop.call_soon_threadsafe(hang.set)

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
