"""The MCP front (docs/mcp.md): a vault key's vendor tools over the Model Context Protocol, each
call one request through the proxy pipeline."""

from keybrake.mcp.front import McpFront

__all__ = ["McpFront"]
