"""MCP tests: the `mcp` SDK's own client against Keybrake's MCP front (docs/mcp.md)."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator

import httpx2
from mcp import Client
from mcp.client.streamable_http import streamable_http_client


@contextlib.asynccontextmanager
async def mcp_http(base_url: str, vault_key: str, **headers: str) -> AsyncIterator[Client]:
    """The SDK's client over streamable HTTP at `base_url`/_keybrake/mcp, with the vault key as Bearer."""
    async with httpx2.AsyncClient(
        headers={"Authorization": f"Bearer {vault_key}", **headers}, timeout=httpx2.Timeout(60.0)
    ) as http:
        async with Client(streamable_http_client(f"{base_url}/_keybrake/mcp", http_client=http)) as client:
            yield client


def text_of(result: object) -> str:
    """The text of a tool result's content."""
    return "\n".join(getattr(c, "text", "") for c in getattr(result, "content", []))
