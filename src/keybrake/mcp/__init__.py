"""The MCP front (docs/mcp.md): a vault key's vendor tools over the Model Context Protocol, each
call one request through the proxy pipeline. `front.McpFront` serves them over HTTP; `bridge`
relays stdio to it (`keybrake mcp`, kept light: it imports neither the proxy nor the store)."""
