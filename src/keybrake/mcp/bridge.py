"""`keybrake mcp`: the MCP front over stdio, for clients that spawn their tools' server as a
process (desktop clients, agent frameworks; docs/mcp.md, stdio).

The process holds only the run's vault key (from its environment), never the store or the
master key: every `tools/list` and `tools/call` it reads on stdin is relayed to the Keybrake
server's `/_keybrake/mcp` endpoint with the key, where the policy is checked and the call audited
exactly as over HTTP, and the answer is written back on stdout.
"""

from __future__ import annotations

import contextlib
import ipaddress
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import urlsplit

import httpx2
import mcp_types as types
from mcp import Client
from mcp.client.streamable_http import streamable_http_client
from mcp.server.lowlevel import Server
from mcp.server.stdio import stdio_server
from mcp.shared.exceptions import MCPError

from keybrake import __version__
from keybrake.mcp.wire import BRIDGE_HEADER, INSTRUCTIONS, tool_error

ENDPOINT = "/_keybrake/mcp"
# A tool call may wait for a person's approval (at most KEYBRAKE_APPROVAL_TIMEOUT_MAX, 1 h) before
# its answer comes: the relay waits as long.
READ_TIMEOUT_S = 3700.0


class RelayRefused(Exception):
    """`keybrake mcp` cannot serve: the message says why and what to change."""


async def check_key(http: httpx2.AsyncClient, url: str) -> None:
    """Before serving: the server at `url` answers as Keybrake and takes the vault key (its agent
    self-view, `GET /_keybrake/self`). Raises RelayRefused naming the cause: nothing answers, not
    a Keybrake proxy port, or the key refused (unknown, revoked, expired) with Keybrake's reason."""
    base = endpoint_url(url)[: -len(ENDPOINT)]
    try:
        r = await http.get(base + "/_keybrake/self")
    except httpx2.HTTPError as exc:
        raise RelayRefused(
            f"nothing answers at {base} ({type(exc).__name__}); give the Keybrake server's proxy address with "
            "--url or KEYBRAKE_URL"
        ) from None
    if r.status_code == 200:
        return
    try:
        error = r.json()["error"]
        code, message = str(error["code"]), str(error["message"])
    except (ValueError, KeyError, TypeError):
        raise RelayRefused(
            f"{base} did not answer as a Keybrake server's proxy port (HTTP {r.status_code}); check --url"
        ) from None
    raise RelayRefused(f"Keybrake at {base} refused the vault key ({code}): {message[:300]}")


def shown(url: str) -> str:
    """The URL as it may be printed: without a user name or password."""
    parts = urlsplit(url)
    return url if "@" not in parts.netloc else url.replace(parts.netloc, parts.netloc.rsplit("@", 1)[1], 1)


def in_clear(url: str) -> bool:
    """Whether the vault key would cross a network unencrypted: http:// to a host not on loopback."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if parts.scheme != "http" or host == "localhost":
        return False
    try:
        return not ipaddress.ip_address(host).is_loopback
    except ValueError:
        return True


def endpoint_url(url: str) -> str:
    """`http://host:8080` (a Keybrake server) → its MCP endpoint; a URL naming the endpoint is kept.
    Raises ValueError for a URL that is not http(s) or names another path."""
    base = url.rstrip("/")
    if not base.startswith(("http://", "https://")):
        raise ValueError(f"{shown(url)!r} is not an http:// or https:// URL of a Keybrake server")
    if "@" in urlsplit(base).netloc:
        raise ValueError("the URL carries a user name or password: the vault key is the only credential; remove it")
    if base.endswith(ENDPOINT):
        return base
    if base.count("/") > 2:
        raise ValueError(f"{shown(url)!r} names a path; give the server's URL (http://host:port) or …{ENDPOINT}")
    return base + ENDPOINT


@contextlib.asynccontextmanager
async def relay(url: str, vault_key: str, agent_run_id: str | None = None) -> AsyncIterator[Server[Any]]:
    """A stdio-servable `Server` whose tools are those the Keybrake server at `url` lists for
    `vault_key`, usable while the context is open. Raises RelayRefused when the server is not there
    or refuses the key (`check_key`)."""
    headers = {"Authorization": f"Bearer {vault_key}", BRIDGE_HEADER: "stdio"}
    if agent_run_id:
        headers["X-Agent-Run-Id"] = agent_run_id
    timeout = httpx2.Timeout(30.0, read=READ_TIMEOUT_S)
    async with httpx2.AsyncClient(headers=headers, timeout=timeout) as http:
        await check_key(http, url)
        # The protocol once (server/discover); each request then adopts it without a round trip.
        async with Client(streamable_http_client(endpoint_url(url), http_client=http)) as probe:
            version, found = probe.protocol_version, probe.session.discover_result
        yield _relay_server(http, url, version, found)


def _relay_server(http: httpx2.AsyncClient, url: str, version: str, found: types.DiscoverResult | None) -> Server[Any]:
    """The stdio server whose listing and calls are the Keybrake server's at `url`, each one
    relayed over its own MCP client session (the endpoint is stateless; `version` and `found`: the
    protocol and the server's discover result negotiated at start, else the handshake each time).
    A server that restarts or cannot be reached fails that one request (a tool error for a call),
    never the relay, which serves the next request once the server is back."""
    endpoint = endpoint_url(url)

    def upstream_client() -> Client:
        transport = streamable_http_client(endpoint, http_client=http)
        if found is None:
            return Client(transport, mode="legacy")
        return Client(transport, mode=version, prior_discover=found)

    async def list_tools(ctx: Any, params: types.PaginatedRequestParams | None) -> types.ListToolsResult:
        try:
            async with upstream_client() as upstream:
                return await upstream.list_tools(cursor=params.cursor if params else None)
        except Exception as exc:  # an ExceptionGroup from the session's tasks: what it wraps
            cause = _cause(exc)
            if isinstance(cause, (httpx2.HTTPError, OSError)):
                raise MCPError(-32603, f"Keybrake at {url} did not answer ({type(cause).__name__})") from None
            raise cause from None

    async def call_tool(ctx: Any, params: types.CallToolRequestParams) -> types.CallToolResult:
        try:
            async with upstream_client() as upstream:
                return await upstream.call_tool(params.name, dict(params.arguments or {}))
        except Exception as exc:  # an ExceptionGroup from the session's tasks: what it wraps
            cause = _cause(exc)
            if isinstance(cause, httpx2.ConnectError):
                return tool_error(
                    f"Keybrake at {url} is unreachable ({type(cause).__name__}); nothing was sent.",
                    "keybrake_unreachable",
                )
            if isinstance(cause, (httpx2.HTTPError, OSError)):
                return tool_error(
                    f"The connection to Keybrake at {url} failed during the call ({type(cause).__name__}): the "
                    "call may have been sent. Check the run's audit trail before calling again.",
                    "connection_lost",
                )
            raise cause from None

    return Server(
        "keybrake",
        version=__version__,
        instructions=INSTRUCTIONS,
        on_list_tools=list_tools,
        on_call_tool=call_tool,
    )


def _cause(exc: BaseException) -> BaseException:
    """The first exception that is not a group: what a task group's ExceptionGroup wraps."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return exc


async def serve_stdio(url: str, vault_key: str, agent_run_id: str | None = None) -> None:
    """Serve the relay on this process's stdin/stdout until the client closes them."""
    async with relay(url, vault_key, agent_run_id) as server, stdio_server() as (read, write):
        await server.run(read, write, server.create_initialization_options())
