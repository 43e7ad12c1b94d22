"""The MCP front (docs/mcp.md): a vault key's vendor tools over the Model Context Protocol, each
call one request through the proxy pipeline. `front.McpFront` serves them over HTTP; `bridge`
relays stdio to it (`keybrake mcp`, kept light: it imports neither the proxy nor the store)."""

# The ASGI scope key app/mcp_route.py records a request body's size under (bytes, as read); here,
# not in `front`, so the app can name it without importing the MCP SDK.
BODY_BYTES_SCOPE_KEY = "keybrake.body_bytes"
