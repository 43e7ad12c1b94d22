"""What the MCP server and the stdio relay share, light enough for `keybrake mcp` to start fast:
the server's instructions, the relay's header, and a tool error (docs/mcp.md)."""

from __future__ import annotations

import mcp_types as types

# The header `keybrake mcp` (stdio) sets on what it relays, recorded as the call's transport.
BRIDGE_HEADER = "x-keybrake-mcp-transport"
INSTRUCTIONS = (
    "Tools of one vendor, called through Keybrake under this run's vault key: every call is checked "
    "against the key's caps and scope before it is sent, and audited. A refused call is a tool error "
    "whose text says whether calling again can help."
)


def tool_error(text: str, code: str) -> types.CallToolResult:
    """A tool error with this text (`isError`: the model reads it; not a protocol failure) and its
    `code` under `_meta.keybrake.code`, for a client to branch on (docs/mcp.md, results and errors:
    tool_unknown, arguments_invalid, enforcement_unavailable, keybrake_unreachable, connection_lost)."""
    result = types.CallToolResult(content=[types.TextContent(type="text", text=text)], is_error=True)
    result.meta = {"keybrake": {"code": code}}  # `_meta` on the wire
    return result
