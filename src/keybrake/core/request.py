"""The proxied request as the pipeline sees it: plain data, parsed once from ASGI."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class ProxyRequest:
    method: str
    raw_path: bytes  # as received, percent-encoded, without the query
    query: bytes
    headers: tuple[tuple[str, str], ...]  # lower-cased names, latin-1 decoded values
    body: bytes
    client: str
    # How the call came in when not as plain HTTP: an MCP tool call's {"tool": …, "transport": …}
    # (keybrake.mcp), recorded on its audit row as metadata.mcp. Set by Keybrake, never from headers.
    via: Mapping[str, str] | None = None

    def header(self, name: str) -> str | None:
        for k, v in self.headers:
            if k == name:
                return v
        return None

    def header_all(self, name: str) -> list[str]:
        return [v for k, v in self.headers if k == name]
