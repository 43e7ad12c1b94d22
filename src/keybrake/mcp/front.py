"""The MCP server: a vault key's vendor tools, each call one request through the proxy pipeline
(docs/mcp.md).

Served over streamable HTTP at `/_keybrake/mcp` on the proxy listener (stateless, JSON answers:
any replica answers any request, no sticky sessions); `keybrake mcp` serves the same tools over
stdio by relaying to that endpoint (`keybrake.mcp.bridge`). The vault key comes with every HTTP
request (`Authorization`), so a revoke is seen by the very next call and a listing is the key's
policy as it is now.
"""

from __future__ import annotations

import asyncio
import contextvars
import hashlib
import hmac
import logging
from collections.abc import Mapping
from typing import Any

import jsonschema
import mcp_types as types
from mcp.server.lowlevel import Server
from mcp.server.streamable_http_manager import StreamableHTTPSessionManager
from mcp.server.transport_security import TransportSecuritySettings
from mcp.shared.exceptions import MCPError

from keybrake import __version__
from keybrake.core.errors import Denial, EnforcementUnavailable
from keybrake.core.request import ProxyRequest
from keybrake.core.timefmt import rfc3339
from keybrake.logs import event
from keybrake.mcp import BODY_BYTES_SCOPE_KEY
from keybrake.mcp.results import denial_result, tool_result
from keybrake.mcp.wire import BRIDGE_HEADER, INSTRUCTIONS, tool_error
from keybrake.proxy.auth import extract_token
from keybrake.proxy.decisions import state_denial
from keybrake.proxy.keys import key_state
from keybrake.proxy.offload import off_loop
from keybrake.proxy.pipeline import Pipeline
from keybrake.store.base import KeyRecord, KeyState
from keybrake.tokens import token_hash
from keybrake.vendors.base import Vendor
from keybrake.vendors.tool_catalog import tools_for
from keybrake.vendors.tools import Tool, ToolInputError, ToolRequest, admitted, blast_radius, build_request

log = logging.getLogger("keybrake.mcp")
# JSON-RPC error code of a refused listing (the implementation-defined server error range).
KEY_REFUSED = -32001
_AGENT_HEADERS = ("x-agent-run-id", "x-triggering-event-id")
_STORE_DOWN = "Keybrake cannot check vault keys now (its store did not answer)"
_NOT_COPIED = frozenset({"x-keybrake-key", BRIDGE_HEADER})  # the key; the relay's mark (recorded as transport)


class McpFront:
    """The MCP server over a `Pipeline`: `handle` is the ASGI app of `/_keybrake/mcp`.

    `max_body_bytes`: the largest JSON-RPC request body (the proxy's own limit is checked before
    it is read, app/mcp_route.py). Start with `start()` (inside the server's lifespan), stop with
    `stop()`.
    """

    def __init__(self, pipeline: Pipeline, *, max_body_bytes: int) -> None:
        self.pipeline = pipeline
        self.server: Server[Any] = Server(
            "keybrake",
            version=__version__,
            instructions=INSTRUCTIONS,
            on_list_tools=self._list_tools,
            on_call_tool=self._call_tool,
            # The SDK's own check of a call's arguments (2026-07-28 protocol) reads the schema here,
            # not by running the caller's tools/list (a key check and a store read per call).
            get_tool_input_schema=self._schema_of,
        )
        # The vault key is required on every request (a browser page cannot send it), so the SDK's
        # DNS-rebinding check on Host and Origin adds nothing and would refuse a load balancer's names.
        self.sessions = StreamableHTTPSessionManager(
            app=self.server,
            json_response=True,
            stateless=True,
            security_settings=TransportSecuritySettings(enable_dns_rebinding_protection=False),
            max_request_body_size=max_body_bytes,
        )
        self._running: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._tools: dict[str, dict[str, tuple[Tool, jsonschema.Draft202012Validator]]] = {}
        # Keys the idempotency keys tool calls derive: no one outside this install can compute one.
        self._idempotency_secret = hmac.new(pipeline.pepper, b"keybrake mcp idempotency", hashlib.sha256).digest()

    async def start(self) -> None:
        """Start the SDK's task group (once per process), on a task of its own, so that any task
        — the first MCP request's — may start it and another — the server's stop — end it.
        Raises what kept it from starting (nothing is left running then)."""
        ready = asyncio.Event()
        running = asyncio.create_task(self._serve(ready), context=contextvars.Context())
        started = asyncio.ensure_future(ready.wait())
        try:
            await asyncio.wait({running, started}, return_when=asyncio.FIRST_COMPLETED)
        except BaseException:  # the starting request was cancelled: stop what it started
            self._stopping.set()
            running.cancel()
            raise
        finally:
            started.cancel()
        if running.done():
            running.result()  # raises what stopped it from starting
        self._running = running

    @property
    def alive(self) -> bool:
        """Started and its task group still running (a crashed SDK task group is not)."""
        return self._running is not None and not self._running.done()

    async def _serve(self, ready: asyncio.Event) -> None:
        async with self.sessions.run():
            ready.set()
            await self._stopping.wait()

    async def stop(self) -> None:
        """Close the SDK's task group (at the server's stop; requests still open are cancelled).
        Never raises: a task group that had crashed is logged, not re-raised into the shutdown."""
        running, self._running = self._running, None
        if running is not None:
            self._stopping.set()
            try:
                await running
            except Exception as exc:
                event(log, "the MCP front had stopped with an error", logging.ERROR, error=type(exc).__name__)

    async def handle(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """The SDK's streamable HTTP handling of one request (already authenticated and read)."""
        await self.sessions.handle_request(scope, receive, send)

    # -- handlers -------------------------------------------------------------------------

    async def _key(self, ctx: Any) -> KeyRecord:
        """The request's key as stored now; raises MCPError for an unknown, revoked or expired key."""
        headers = _headers(ctx)
        try:
            token = extract_token(ProxyRequest("POST", b"/_keybrake/mcp", b"", headers, b"", ""))
            key = await self.pipeline.keys.lookup(token_hash(self.pipeline.pepper, token), cached=True)
            if key is None:
                raise Denial("key_invalid", "Unknown vault key. Do not retry.")
            state = await key_state(key, self.pipeline.store)
            if state is not KeyState.OK:
                raise state_denial(state, key)
        except Denial as denial:
            raise MCPError(KEY_REFUSED, f"Keybrake refused this vault key ({denial.code}): {denial.message}") from None
        except EnforcementUnavailable:
            raise MCPError(KEY_REFUSED, _STORE_DOWN + "; retry shortly.") from None
        return key

    async def _list_tools(self, ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        key = await self._key(ctx)
        vendor = self.pipeline.vendors.get(key.vendor)
        if vendor is None:
            return types.ListToolsResult(tools=[])
        policy = self.pipeline.snapshots.policy(key)
        expires = rfc3339(key.expires_at)
        return types.ListToolsResult(
            tools=[_listed(t, blast_radius(t, policy, expires)) for t in tools_for(vendor) if admitted(t, policy)]
        )

    def _schema_of(self, name: str) -> dict[str, Any] | None:
        """Any vendor's tool schema by name (None: no such tool; the call then says so)."""
        for vendor in self.pipeline.vendors.values():
            found = self._tool(vendor, name)
            if found is not None:
                return dict(found[1].schema)
        return None

    def _tool(self, vendor: Vendor, name: str) -> tuple[Tool, jsonschema.Draft202012Validator] | None:
        """The vendor's tool of that name and its arguments' validator (built once per tool)."""
        tools = self._tools.get(vendor.name)
        if tools is None:
            tools = self._tools[vendor.name] = {
                t.name: (t, jsonschema.Draft202012Validator(t.input_schema())) for t in tools_for(vendor)
            }
        return tools.get(name)

    async def _call_tool(self, ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        headers = _headers(ctx)
        head = ProxyRequest("POST", b"/_keybrake/mcp", b"", headers, b"", "")
        key, refused = await self.pipeline.admit(head)  # the key as cached: its state is checked by the pipeline
        if refused is not None:
            raise MCPError(KEY_REFUSED, f"Keybrake refused this vault key ({refused.code}): {refused.message}")
        if key is None:
            return tool_error(_STORE_DOWN + "; nothing was sent. Retry shortly.", "enforcement_unavailable")
        vendor = self.pipeline.vendors.get(key.vendor)
        found = self._tool(vendor, params.name) if vendor is not None else None
        if vendor is None or found is None:
            return tool_error(
                f"No tool {params.name[:80]!r} for this vault key ({key.vendor}); tools/list names its tools. "
                "Nothing was sent.",
                "tool_unknown",
            )
        tool, validator = found
        args = dict(params.arguments or {})
        limit = self.pipeline.settings.max_body_bytes or vendor.max_body_bytes
        # Checking and encoding take time in proportion to the arguments: a large call's is done off
        # the event loop like the pipeline's own work on a large body (proxy/offload.py).
        secret = self._idempotency_secret
        try:
            prepared = await off_loop(_body_bytes(ctx), _prepare, tool, validator, args, key.id, limit, secret)
        except Denial as waited:  # behind other large bodies past its deadline: nothing built or sent
            return denial_result(waited)
        if isinstance(prepared, str):
            return tool_error(f"Invalid arguments for {tool.name}: {prepared}. Nothing was sent.", "arguments_invalid")
        built = prepared
        out = [("authorization", f"Bearer {extract_token(head)}")]
        if built.content_type is not None:
            out.append(("content-type", built.content_type))
        if built.idempotency_key is not None:
            out.append((vendor.idempotency_header, built.idempotency_key))
        out += [
            (k, v) for k, v in headers if k in _AGENT_HEADERS or (k.startswith("x-keybrake-") and k not in _NOT_COPIED)
        ]
        via = {"tool": tool.name, "transport": _transport(headers)}
        req = ProxyRequest(built.method, built.raw_path, built.query, tuple(out), built.body, _client(ctx), via)
        refused = (await self.pipeline.admit(req))[1]
        resp = await (self.pipeline.handle_denial(req, refused) if refused else self.pipeline.handle(req))
        return tool_result(vendor.name, resp)


def _body_bytes(ctx: Any) -> int:
    """The size of the request body as read (app/mcp_route.py sets it; a header could be left out)."""
    request = getattr(ctx, "request", None)
    return int(request.scope.get(BODY_BYTES_SCOPE_KEY, 0)) if request is not None else 0


def _prepare(
    tool: Tool,
    validator: jsonschema.Draft202012Validator,
    args: dict[str, Any],
    key_id: str,
    limit: int,
    secret: bytes,
) -> ToolRequest | str:
    """The vendor request for these arguments, or what is wrong with them (the first problem
    only: the cost never grows with the number of problems)."""
    first = next(iter(validator.iter_errors(args)), None)
    if first is not None:
        where = "/".join(str(p)[:40] for p in first.absolute_path) or "arguments"
        why = "null is not accepted: leave the argument out" if first.instance is None else first.message[:200]
        return f"{where[:200]}: {why}"
    try:
        return build_request(tool, args, key_id, max_body_bytes=limit, secret=secret)
    except ToolInputError as exc:
        return str(exc)


def _listed(tool: Tool, limits: str) -> types.Tool:
    reads = tool.method == "GET"
    return types.Tool(
        name=tool.name,
        title=tool.summary.split(":")[0].split(".")[0][:80],
        description=f"{tool.summary}\n\n{limits}",
        input_schema=tool.input_schema(),
        annotations=types.ToolAnnotations(
            read_only_hint=reads,
            destructive_hint=not reads and bool(tool.moves),
            idempotent_hint=reads or tool.idempotent,
            open_world_hint=True,
        ),
    )


def _headers(ctx: Any) -> tuple[tuple[str, str], ...]:
    """The HTTP request's headers, lower-case names (none when the context has no HTTP request)."""
    request = getattr(ctx, "request", None)
    if request is None:
        return ()
    return tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in request.scope["headers"])


def _client(ctx: Any) -> str:
    request = getattr(ctx, "request", None)
    client = request.scope.get("client") if request is not None else None
    return str(client[0]) if client else ""


def _transport(headers: tuple[tuple[str, str], ...]) -> str:
    claimed: Mapping[str, str] = dict(headers)
    return "stdio" if claimed.get(BRIDGE_HEADER) == "stdio" else "streamable-http"
