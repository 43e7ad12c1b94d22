"""The listeners: sockets, connection limits, header limits and timeouts, and uvicorn's config.

`keybrake serve` and the test harness build the server through `server_config`, so tests run
with the production settings. uvicorn's httptools protocol has no limit on header size and no
header-read timeout (a connection that never finishes its headers is kept forever, and a 25 MB
header is buffered whole), and its `limit_concurrency` still accepts and keeps every
connection. `GuardedHttpProtocol` adds, per listener:

- a connection limit: past `limit` open connections a connection is answered 503
  `too_many_connections` (JSON, `Retry-After: 1`) as soon as its request head arrives, and
  closed; past `limit + overflow` it is closed at once. File descriptors are bounded by
  the sum of the listeners' ceilings (`fd_budget`);
- a header size limit: request line + headers past `max_header_bytes` → 431
  `header_too_large`, checked on every chunk before the parser buffers more;
- a header-read timeout: from the connection's start, and from the end of each response,
  until the next request's headers are complete; past it the connection is closed. The same
  time without a byte of a request body that is still arriving also closes the connection;
- the idle keep-alive timeout (uvicorn's own, from the settings).

One process serves one or two listeners (the proxy, and the admin API on its own TCP address
or unix socket): one uvicorn server, one event loop, one application. Each connection learns
its listener from its local address, and every request carries it in
`scope["keybrake.listener"]`: "proxy", "admin", or "all" (one listener for both).

`guard` holds the protocol and the listeners it serves; `sockets` binds the sockets, builds
uvicorn's configuration and sizes the file-descriptor budget.
"""

from keybrake.listener.guard import SCOPE_KEY, GuardedHttpProtocol, Listener, ListenerError, Listeners, ceiling
from keybrake.listener.sockets import (
    FD_MARGIN,
    UPSTREAM_CONNECTIONS,
    KeybrakeServer,
    bind_listeners,
    bind_tcp,
    bind_unix,
    ensure_fd_limit,
    fd_budget,
    server_config,
)

__all__ = [
    "FD_MARGIN",
    "SCOPE_KEY",
    "UPSTREAM_CONNECTIONS",
    "GuardedHttpProtocol",
    "KeybrakeServer",
    "Listener",
    "ListenerError",
    "Listeners",
    "bind_listeners",
    "bind_tcp",
    "bind_unix",
    "ceiling",
    "ensure_fd_limit",
    "fd_budget",
    "server_config",
]
