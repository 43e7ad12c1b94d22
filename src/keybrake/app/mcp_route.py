"""`/_keybrake/mcp` on the proxy listener: the checks made before the MCP SDK reads a request
(docs/mcp.md, the HTTP endpoint).

Like a proxied call: a request without a usable vault key is refused before its body is read
(401, the generic Keybrake error, with an audit row as for any proxied request), and the body
is read within the same limits (KEYBRAKE_MAX_BODY_BYTES or the key's vendor's, and the process's
`BodyBudget`). Only then does the SDK see the request, with the body replayed to it. A tool
call held for approval watches the client's connection as a proxied call does: a client that hangs
up is never sent (`proxy.approval.CLIENT_GONE`).

The MCP SDK is loaded by the first request to the endpoint (`LazyMcpFront`), not at start: a
server that never serves MCP never pays its import (≈ 1.5 s of CPU here), nor does any CLI command.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from keybrake.app.body import BodyBudget, BodyBudgetExceeded, read_body
from keybrake.config import Settings
from keybrake.core.body_values import TOO_MANY_VALUES, too_many_values
from keybrake.core.errors import Denial
from keybrake.core.request import ProxyRequest
from keybrake.mcp import BODY_BYTES_SCOPE_KEY
from keybrake.proxy.approval import CLIENT_GONE
from keybrake.proxy.pipeline import Pipeline
from keybrake.proxy.render import ProxyResponse, denial_response

if TYPE_CHECKING:
    from keybrake.mcp.front import McpFront

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
PATH = "/_keybrake/mcp"
STOPPING = "Keybrake is stopping; nothing was sent. Retry shortly."


class LazyMcpFront:
    """The `McpFront` over `pipeline`, built and started by the first request that needs it.

    The SDK's modules are imported on a worker thread (the event loop keeps answering proxied
    calls meanwhile); requests arriving during that wait for the same front. `stop()` (the
    server's stop) ends it if it was started; a request after that is refused by the caller.
    Raises whatever importing or starting the SDK raised (the request gets a 500; the next tries again).
    """

    def __init__(self, pipeline: Pipeline, *, max_body_bytes: int) -> None:
        self._pipeline = pipeline
        self._max_body_bytes = max_body_bytes
        self._front: McpFront | None = None
        self._lock = asyncio.Lock()
        self.stopped = False

    @property
    def loaded(self) -> bool:
        """Whether the front has been built and started."""
        return self._front is not None

    async def front(self) -> McpFront | None:
        """The started front (built now if no request has needed it yet, or again if its task
        group crashed); None once `stop()` was called."""
        if self._front is not None and self._front.alive:
            return self._front
        async with self._lock:
            if self.stopped:
                return None
            if self._front is None or not self._front.alive:
                if self._front is not None:
                    await self._front.stop()  # logs why it ended
                    self._front = None
                module = await asyncio.to_thread(importlib.import_module, "keybrake.mcp.front")
                front: McpFront = module.McpFront(self._pipeline, max_body_bytes=self._max_body_bytes)
                await front.start()
                self._front = front
            return self._front

    async def stop(self) -> None:
        """Stop the front if it was started; no new one is built after this."""
        self.stopped = True
        async with self._lock:
            front, self._front = self._front, None
            if front is not None:
                await front.stop()


class _Replay:
    """The ASGI receive the SDK gets: the body read already, then the client's disconnect —
    waited for by one task, so the SDK and a held call's watch (`gone`) can both wait for it."""

    def __init__(self, body: bytes, receive: Receive) -> None:
        self._body: bytes | None = body
        self._receive = receive
        self._watch: asyncio.Future[dict[str, Any]] | None = None

    async def receive(self) -> dict[str, Any]:
        if self._body is not None:
            body, self._body = self._body, None
            return {"type": "http.request", "body": body, "more_body": False}
        return await self.gone()

    async def gone(self) -> dict[str, Any]:
        """Return (the `http.disconnect` message) once the client has disconnected."""
        if self._watch is None:
            self._watch = asyncio.ensure_future(self._until_disconnect())
        return await asyncio.shield(self._watch)

    async def _until_disconnect(self) -> dict[str, Any]:
        while (message := await self._receive())["type"] != "http.disconnect":
            pass
        return message

    def close(self) -> None:
        if self._watch is not None:
            self._watch.cancel()


def _refuse(pipeline: Pipeline, code: str, message: str, *extra: tuple[str, str]) -> ProxyResponse:
    """Keybrake's generic error answer (the proxy's own rendering), the connection closed."""
    resp = denial_response(Denial(code, message), None, request_id=None, key_id=None, now_ms=pipeline.store.now_ms())
    resp.headers += [*extra, ("connection", "close")]
    return resp


async def serve_mcp(
    mcp: LazyMcpFront,
    pipeline: Pipeline,
    settings: Settings,
    budget: BodyBudget,
    scope: dict[str, Any],
    receive: Receive,
    send: Send,
    reply: Callable[[Send, ProxyResponse], Awaitable[None]],
) -> None:
    """Answer one request to `/_keybrake/mcp`: POST only (the endpoint is stateless: no GET
    stream, no session to DELETE), a known vault key, a body within the limits; then the SDK."""
    if scope["method"] != "POST":
        message = "The MCP endpoint takes POST (stateless streamable HTTP: no stream to GET, no session to DELETE)."
        await reply(send, _refuse(pipeline, "method_not_supported", message, ("allow", "POST")))
        return
    headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"])
    client = scope.get("client")
    head = ProxyRequest("POST", PATH.encode(), b"", headers, b"", client[0] if client else "")
    key, refusal = await pipeline.admit(head)
    if refusal is not None:
        resp = await pipeline.handle_denial(head, refusal)
        resp.headers += [("www-authenticate", 'Bearer realm="keybrake"'), ("connection", "close")]
        await reply(send, resp)
        return
    if key is None:  # the store did not answer: enforcement is unsure, nothing is read
        message = "Keybrake cannot check vault keys right now (its store did not answer); retry shortly."
        await reply(send, _refuse(pipeline, "enforcement_unavailable", message))
        return
    vendor = pipeline.vendors.get(key.vendor)
    limit = settings.max_body_bytes or (vendor.max_body_bytes if vendor is not None else 1024 * 1024)
    try:
        body, too_large, gone = await read_body(receive, limit, headers, budget)
    except BodyBudgetExceeded:
        message = (
            "Keybrake is holding too many request bodies at once (KEYBRAKE_MAX_BUFFERED_BODY_BYTES); "
            "nothing was sent. Retry shortly."
        )
        await reply(send, _refuse(pipeline, "enforcement_unavailable", message))
        return
    if gone:
        return
    try:
        if too_large:
            message = f"The request body is larger than {limit} bytes (KEYBRAKE_MAX_BODY_BYTES)."
            await reply(send, _refuse(pipeline, "body_too_large", message))
            return
        if too_many_values(body):  # before the SDK's parse, which holds the interpreter lock throughout
            await reply(send, _refuse(pipeline, "body_too_large", TOO_MANY_VALUES))
            return
        inner = {**scope, "path": "/", "raw_path": b"/", BODY_BYTES_SCOPE_KEY: len(body)}
        front = await mcp.front()
        if front is None:
            await reply(send, _refuse(pipeline, "enforcement_unavailable", STOPPING))
            return
        replay = _Replay(body, receive)
        CLIENT_GONE.set(replay.gone)  # the SDK's handler task inherits it (a copy of this context)
        try:
            await front.handle(inner, replay.receive, send)
        finally:
            replay.close()
    finally:
        if not too_large:
            budget.give(len(body))
