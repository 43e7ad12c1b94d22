"""The connection guard: `GuardedHttpProtocol` (uvicorn's httptools protocol with the limits the
package docstring lists), the listeners it serves and their connection ceilings."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import logging
import socket
import time
from asyncio import TimerHandle, Transport
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from keybrake.config import Settings
from keybrake.logs import event

log = logging.getLogger("keybrake.listener")

SCOPE_KEY = "keybrake.listener"
_WILDCARD = frozenset({"", "0.0.0.0", "::"})  # noqa: S104 (names the wildcard, binds nothing)


class ListenerError(Exception):
    """A listener could not be set up (address in use, a live server on the unix socket…)."""


@dataclass(eq=False)
class Listener:
    """One listening socket, its role, and the connections it holds open right now."""

    role: str  # "proxy", "admin" or "all"
    sock: socket.socket
    limit: int  # open connections served normally
    address: str  # for logs and messages: http://host:port or unix:/path
    unix_path: Path | None = None
    open: set[GuardedHttpProtocol] = field(default_factory=set)

    @property
    def ceiling(self) -> int:
        return ceiling(self.limit)

    def matches(self, local: tuple[str, int | None] | None) -> int:
        """How well an accepted connection's local address matches: 2 exactly, 1 by wildcard, 0 not."""
        if local is None:
            return 0
        if self.unix_path is not None:
            return 2 if local[1] is None and local[0] == str(self.unix_path) else 0
        host, port = self.sock.getsockname()[:2]
        if local[1] != port:
            return 0
        if host in _WILDCARD:
            return 1
        return 2 if _same_ip(host, local[0]) else 0


def ceiling(limit: int) -> int:
    """Connections a listener holds at most: `limit` served, then 10% (at least 8) more that get
    their 503; past that a new connection is closed at once."""
    return limit + max(8, limit // 10)


def _same_ip(a: str, b: str) -> bool:
    try:
        ia, ib = ipaddress.ip_address(a.split("%")[0]), ipaddress.ip_address(b.split("%")[0])
    except ValueError:
        return a == b
    ia = getattr(ia, "ipv4_mapped", None) or ia
    ib = getattr(ib, "ipv4_mapped", None) or ib
    return ia == ib


class Listeners:
    """The listeners of one server, and the limits every connection on them obeys."""

    def __init__(self, listeners: list[Listener], settings: Settings) -> None:
        if not listeners:
            raise ListenerError("no listener")
        self.all = listeners
        self.max_header_bytes = settings.max_header_bytes
        self.header_timeout_s = settings.header_timeout_s
        self.body_timeout_s = settings.body_timeout_s
        self._notes: dict[tuple[str, str], tuple[float, int]] = {}

    @property
    def sockets(self) -> list[socket.socket]:
        return [lst.sock for lst in self.all]

    def find(self, local: tuple[str, int | None] | None) -> Listener:
        """The listener a connection was accepted on; when unsure, the proxy's (never the admin's)."""
        best = max(self.all, key=lambda lst: lst.matches(local))  # an exact match beats a wildcard
        if best.matches(local) == 0:
            return next(lst for lst in self.all if lst.role != "admin")
        return best

    def note(self, listener: Listener, kind: str, message: str) -> None:
        """Log a refusal at most once per 10 s per listener and kind, with how many were not logged."""
        now = time.monotonic()
        last, quiet = self._notes.get((listener.role, kind), (-1e9, 0))
        if now - last < 10:
            self._notes[(listener.role, kind)] = (last, quiet + 1)
            return
        self._notes[(listener.role, kind)] = (now, 0)
        event(log, message, logging.WARNING, listener=listener.role, refused_since_last_log=quiet)

    def close(self) -> None:
        """Close the sockets and remove a unix socket file (at shutdown)."""
        for lst in self.all:
            with contextlib.suppress(OSError):
                lst.sock.close()
            if lst.unix_path is not None:
                with contextlib.suppress(OSError):
                    lst.unix_path.unlink()


def _error_bytes(status: int, code: str, message: str, extra: bytes = b"") -> bytes:
    body = json.dumps({"error": {"type": "keybrake_error", "code": code, "message": message}}).encode()
    return b"".join(
        [
            STATUS_LINE[status],
            b"content-type: application/json; charset=utf-8\r\n",
            b"content-length: " + str(len(body)).encode() + b"\r\n",
            extra,
            b"connection: close\r\n\r\n",
            body,
        ]
    )


class _OneWriteTransport:
    """The connection's transport as one response cycle sees it: the response head (status line
    and headers, written by uvicorn on `http.response.start`) is held and goes out with the first
    body write, in one send instead of two. Anything written before the response starts (100
    Continue) goes at once; a close or the end of the response flushes a held head first.

    The end of the response is caught on the cycle itself (its `on_response` callback is wrapped),
    never through the protocol's `self.cycle`: with a pipelined next request uvicorn has already
    replaced that by the next cycle, and a HEAD answer (no body write) would never be flushed."""

    __slots__ = ("_cycle", "_head", "_on_response", "_started", "_transport")

    def __init__(self, transport: Transport, cycle: Any) -> None:
        self._transport = transport
        self._cycle = cycle
        self._head: bytes | None = None
        self._started = False
        self._on_response = getattr(cycle, "on_response", None)
        if self._on_response is not None:
            cycle.on_response = self._response_complete

    def _response_complete(self) -> None:
        """This cycle's response is complete: its held head (a HEAD answer) goes now, before the
        protocol starts the next pipelined request."""
        self.flush()
        if self._on_response is not None:
            self._on_response()

    def write(self, data: bytes) -> None:
        if not self._started and self._cycle.response_started:
            self._started = True
            self._head = data
            return
        if self._head is not None:
            data, self._head = self._head + data, None
        self._transport.write(data)

    def flush(self) -> None:
        if self._head is not None:
            head, self._head = self._head, None
            self._transport.write(head)

    def close(self) -> None:
        self.flush()
        self._transport.close()

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class _Refused(Exception):
    """Raised inside a parser callback to stop parsing: the answer is already written."""


class GuardedHttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the limits above. Bound to its listeners by `bind_protocol`."""

    listeners: ClassVar[Listeners]

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.listener: Listener | None = None
        self._head_pending = True  # waiting for a request's headers to complete
        self._head_bytes = 0
        self._head_timer: TimerHandle | None = None
        self._over_limit = False
        self._refused = False
        self._body_timer: TimerHandle | None = None
        self._body_deadline: float | None = None  # loop time by which the body must have arrived
        self._body_pending = False  # a request's body is still arriving

    # -- connection --------------------------------------------------------------------------

    def connection_made(self, transport: Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        listener = self.listener = self.listeners.find(self.server)
        if len(listener.open) >= listener.ceiling:
            self.listeners.note(listener, "ceiling", "connection closed at once: past the connection limit")
            self._refused = True
            transport.close()
            return
        self._over_limit = len(listener.open) >= listener.limit
        listener.open.add(self)
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.listener is not None:
            self.listener.open.discard(self)
        self._cancel_head_timer()
        self._cancel_body_timer()
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return
        self._unset_keepalive_if_required()
        if self._head_pending:
            self._head_bytes += len(data)
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._unsupported_upgrade_warning()
        except httptools.HttpParserError:
            if self._refused:
                return  # a callback refused the request and answered
            self.logger.warning("Invalid HTTP request received.")
            self.send_400_response("Invalid HTTP request received.")
            return
        if self._head_pending and self._head_bytes > self.listeners.max_header_bytes:
            self._refuse_header_size()
        elif self._body_pending:
            self._arm_body_timer()  # (re)armed after each chunk while a body is still arriving

    # -- parser callbacks --------------------------------------------------------------------

    def on_message_begin(self) -> None:
        super().on_message_begin()
        assert self.listener is not None
        self.scope[SCOPE_KEY] = self.listener.role  # type: ignore[literal-required]

    def on_headers_complete(self) -> None:
        self._head_pending = False
        self._cancel_head_timer()
        size = len(self.url) + sum(len(n) + len(v) + 4 for n, v in self.headers)
        if size > self.listeners.max_header_bytes:
            self._refuse_header_size()
            raise _Refused
        if self._over_limit:
            assert self.listener is not None
            self.listeners.note(self.listener, "limit", "request refused: past the connection limit")
            admin = self.listener.role == "admin"
            limit_name = "KEYBRAKE_ADMIN_MAX_CONNECTIONS" if admin else "KEYBRAKE_MAX_CONNECTIONS"
            self._refuse(
                503,
                "too_many_connections",
                f"Keybrake holds its limit of {self.listener.limit} open connections on this listener "
                f"({limit_name}); nothing was done. Retry shortly.",
                b"retry-after: 1\r\n",
            )
            raise _Refused
        super().on_headers_complete()
        if self.cycle is not None:
            self.cycle.transport = _OneWriteTransport(self.transport, self.cycle)  # type: ignore[assignment]
        self._body_pending = True

    def on_message_complete(self) -> None:
        super().on_message_complete()
        self._body_pending = False
        self._body_deadline = None
        self._cancel_body_timer()
        self._head_pending = True  # the next request's head, if any, is what is awaited now
        self._head_bytes = 0

    def on_response_complete(self) -> None:
        super().on_response_complete()  # a held head was flushed by its own cycle (_OneWriteTransport)
        if self._head_pending and not self.transport.is_closing():
            self._arm_head_timer()

    # -- refusals and timers -----------------------------------------------------------------

    def _refuse_header_size(self) -> None:
        assert self.listener is not None
        self.listeners.note(self.listener, "header", "request refused: headers too large")
        self._refuse(
            431,
            "header_too_large",
            f"The request line and headers are larger than {self.listeners.max_header_bytes} bytes "
            "(KEYBRAKE_MAX_HEADER_BYTES); nothing was done.",
        )

    def _refuse(self, status: int, code: str, message: str, extra: bytes = b"") -> None:
        self._refused = True
        self._cancel_head_timer()
        if not self.transport.is_closing():
            if self.cycle is None or self.cycle.response_complete:
                self.transport.write(_error_bytes(status, code, message, extra))
            self.transport.close()

    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.listeners.header_timeout_s, self._head_timeout)

    def _cancel_head_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _arm_body_timer(self) -> None:
        """Close the connection when the body stalls (no byte for the header timeout) or is still
        arriving at its deadline (KEYBRAKE_BODY_TIMEOUT from the end of the head): a body
        trickled a byte at a time must not hold a connection for ever."""
        self._cancel_body_timer()
        now = self.loop.time()
        if self._body_deadline is None:
            self._body_deadline = now + self.listeners.body_timeout_s
        delay = min(self.listeners.header_timeout_s, max(0.0, self._body_deadline - now))
        self._body_timer = self.loop.call_later(delay, self._body_timeout)

    def _cancel_body_timer(self) -> None:
        if self._body_timer is not None:
            self._body_timer.cancel()
            self._body_timer = None

    def _body_timeout(self) -> None:
        """No byte of a request body for the header timeout: closed (the app sees a disconnect).
        While reading is paused because the app has not taken what arrived, the clock waits."""
        self._body_timer = None
        if not self._body_pending or self.transport.is_closing():
            return
        if self.flow.read_paused and self.loop.time() < (self._body_deadline or 0):
            self._arm_body_timer()
            return
        assert self.listener is not None
        self.listeners.note(self.listener, "body", "connection closed: a request body stalled or came too slowly")
        self._refused = True
        self.transport.close()

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._head_pending and not self.transport.is_closing():
            assert self.listener is not None
            self.listeners.note(self.listener, "timeout", "connection closed: no complete request head in time")
            self._refused = True
            self.transport.close()


def bind_protocol(listeners: Listeners) -> type[GuardedHttpProtocol]:
    """A protocol class bound to these listeners (uvicorn builds one instance per connection)."""
    return type("KeybrakeHttpProtocol", (GuardedHttpProtocol,), {"listeners": listeners})
