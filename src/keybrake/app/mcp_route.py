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
from keybrake.core.errors import Denial
from keybrake.core.request import ProxyRequest
from keybrake.mcp.front import BODY_BYTES_SCOPE_KEY, McpFront
from keybrake.proxy.pipeline import Pipeline
from keybrake.proxy.render import ProxyResponse, denial_response

Send = Callable[[dict[str, Any]], Awaitable[None]]
Receive = Callable[[], Awaitable[dict[str, Any]]]
PATH = "/_keybrake/mcp"


def _refuse(pipeline: Pipeline, code: str, message: str, *extra: tuple[str, str]) -> ProxyResponse:
    """Keybrake's generic error answer (the proxy's own rendering), the connection closed."""
    resp = denial_response(Denial(code, message), None, request_id=None, key_id=None, now_ms=pipeline.store.now_ms())
    resp.headers += [*extra, ("connection", "close")]
    return resp


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
        inner = {**scope, "path": "/", "raw_path": b"/", BODY_BYTES_SCOPE_KEY: len(body)}
        await mcp.handle(inner, replay_body(body, receive), send)
    finally:
        if not too_large:
            budget.give(len(body))
