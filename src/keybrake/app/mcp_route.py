"""`/_keybrake/mcp` on the proxy listener: the checks made before the MCP SDK reads a request
(docs/mcp.md, the HTTP endpoint).

Like a proxied call: a request without a usable vault key is refused before its body is read
(401, the generic Keybrake error, with an audit row as for any proxied request), and the body
is read within the same limits (KEYBRAKE_MAX_BODY_BYTES or the key's vendor's, and the process's
`BodyBudget`). Only then does the SDK see the request, with the body replayed to it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from keybrake.admin.gate import replay_body
from keybrake.app.body import BodyBudget, BodyBudgetExceeded, read_body
from keybrake.config import Settings
from keybrake.core.jsonfmt import dumps
from keybrake.core.request import ProxyRequest
from keybrake.mcp.front import BODY_BYTES_SCOPE_KEY, McpFront
from keybrake.proxy.pipeline import Pipeline
from keybrake.proxy.render import JSON_TYPE, ProxyResponse

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
PATH = "/_keybrake/mcp"


def _error(status: int, code: str, message: str, *extra: tuple[str, str]) -> ProxyResponse:
    body = dumps({"error": {"type": "keybrake_error", "code": code, "message": message}})
    return ProxyResponse(status, [("content-type", JSON_TYPE), *extra], body)


async def serve_mcp(
    mcp: McpFront,
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
        await reply(send, _error(405, "method_not_supported", message, ("allow", "POST"), ("connection", "close")))
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
        await reply(send, _error(503, "enforcement_unavailable", message, ("connection", "close")))
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
        await reply(send, _error(503, "enforcement_unavailable", message, ("connection", "close")))
        return
    if gone:
        return
    try:
        if too_large:
            message = f"The request body is larger than {limit} bytes (KEYBRAKE_MAX_BODY_BYTES)."
            await reply(send, _error(413, "body_too_large", message, ("connection", "close")))
            return
        inner = {**scope, "path": "/", "raw_path": b"/", BODY_BYTES_SCOPE_KEY: len(body)}
        await mcp.handle(inner, replay_body(body, receive), send)
    finally:
        if not too_large:
            budget.give(len(body))
