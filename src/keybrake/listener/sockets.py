"""The listening sockets (TCP, or a unix socket for the admin API), uvicorn's configuration, and the
file-descriptor budget the connection limits need (docs/operations.md, file descriptors)."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
import socket
import stat
from collections.abc import Callable
from pathlib import Path
from typing import Any

import uvicorn

from keybrake.config import Settings
from keybrake.listener.guard import Listener, ListenerError, Listeners, bind_protocol, ceiling

UPSTREAM_CONNECTIONS = 256  # the upstream connector's limit (net/upstream.py)
FD_MARGIN = 64  # logs, the SQLite files, DNS, the alert worker, a shell's worth of slack


# The settings that choose each listener's address: named in a refusal to bind.
PROXY_SETTINGS = ("--port or KEYBRAKE_PORT", "--host or KEYBRAKE_HOST")
ADMIN_SETTINGS = ("--admin-port or KEYBRAKE_ADMIN_PORT", "--admin-host or KEYBRAKE_ADMIN_HOST")


def bind_tcp(host: str, port: int, settings: tuple[str, str] = PROXY_SETTINGS) -> socket.socket:
    """A bound TCP socket (SO_REUSEADDR, as uvicorn binds). Raises ListenerError, one line naming
    the port and `settings` (the flag or variable of the port, then of the host) to change."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        if exc.errno == errno.EADDRINUSE:
            raise ListenerError(
                f"port {port} on {host} is already in use (another keybrake serve, or another program): "
                f"stop it, or choose another port with {settings[0]}"
            ) from None
        raise ListenerError(
            f"cannot listen on {host}:{port}: {exc.strerror or exc} (the address is set by {settings[1]}, "
            f"the port by {settings[0]})"
        ) from None
    return sock


def bind_unix(path: Path) -> socket.socket:
    """A unix socket at `path`, mode 0600 from its creation. A stale socket file is replaced;
    a live one (a server answers on it) or any other file is an error (ListenerError)."""
    if path.exists() or path.is_symlink():
        if not stat.S_ISSOCK(path.lstat().st_mode):
            raise ListenerError(f"{path} exists and is not a socket; remove it or choose another path")
        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.connect(str(path))
        except OSError:
            path.unlink()  # stale: nobody listens
        else:
            raise ListenerError(f"another server is listening on {path}")
        finally:
            probe.close()
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    old = os.umask(0o177)
    try:
        sock.bind(str(path))
    except OSError as exc:
        sock.close()
        hint = ""
        if not path.parent.is_dir():
            hint = (
                f" (the directory {path.parent} does not exist: create it first, owned by the user Keybrake runs "
                "as, mode 0700, e.g. systemd RuntimeDirectory=keybrake)"
            )
        raise ListenerError(f"cannot listen on {path}: {exc.strerror or exc}{hint}") from None
    finally:
        os.umask(old)
    os.chmod(path, 0o600)
    return sock


def _tcp_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def bind_listeners(settings: Settings, *, proxy_sock: socket.socket | None = None) -> Listeners:
    """The proxy listener (`proxy_sock` if given, else `host:port`) and, if configured, the admin one.

    Raises ListenerError; sockets bound before the error are closed.
    """
    bound: list[Listener] = []
    try:
        sock = proxy_sock or bind_tcp(settings.host, settings.port)
        role = "proxy" if settings.separate_admin else "all"
        bound.append(Listener(role, sock, settings.max_connections, _tcp_address(sock)))
        if settings.admin_socket is not None:
            path = settings.admin_socket.absolute()
            bound.append(Listener("admin", bind_unix(path), settings.admin_max_connections, f"unix:{path}", path))
        elif settings.admin_port is not None:
            admin = bind_tcp(settings.admin_host or "127.0.0.1", settings.admin_port, ADMIN_SETTINGS)
            bound.append(Listener("admin", admin, settings.admin_max_connections, _tcp_address(admin)))
    except BaseException:
        for lst in bound:
            if lst.sock is not proxy_sock:
                lst.sock.close()
        raise
    return Listeners(bound, settings)


def server_config(app: Any, settings: Settings, listeners: Listeners) -> uvicorn.Config:
    """The one uvicorn configuration of `keybrake serve` (and of the tests' servers).

    Forwarded headers (X-Forwarded-For/-Proto) are believed only from KEYBRAKE_TRUSTED_PROXIES
    (addresses or CIDR networks, which uvicorn 0.54 matches); without it they are ignored.
    """
    return uvicorn.Config(
        app,
        lifespan="on",
        http=bind_protocol(listeners),
        ws="none",  # an Upgrade request is served as plain HTTP, never handed to another protocol
        loop="none",
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=int(settings.graceful_shutdown_s),
        timeout_keep_alive=settings.keepalive_timeout_s,  # type: ignore[arg-type]
        server_header=False,
        proxy_headers=bool(settings.trusted_proxies),
        forwarded_allow_ips=list(settings.trusted_proxies) or None,
    )


class KeybrakeServer(uvicorn.Server):
    """uvicorn's server that tells the app the moment it starts stopping (`on_stop`), before it
    waits for open requests to finish: calls held for approval end then (docs/approvals.md)
    instead of holding the stop for their whole wait."""

    def __init__(self, config: uvicorn.Config, on_stop: Callable[[], None] | None = None) -> None:
        super().__init__(config)
        self.on_stop = on_stop

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        if self.on_stop is not None:
            self.on_stop()
        await super().shutdown(sockets)


# -- file descriptors ------------------------------------------------------------------------


def fd_budget(settings: Settings) -> int:
    """File descriptors the limits can hold open at once: every listener's ceiling, the store's
    connections, the upstream connector's 256, and a margin (docs/operations.md)."""
    listeners = ceiling(settings.max_connections)
    if settings.separate_admin:
        listeners += ceiling(settings.admin_max_connections)
    store = settings.pg_pool_size if settings.database_url and not settings.database_url.startswith("sqlite") else 8
    return listeners + store + UPSTREAM_CONNECTIONS + FD_MARGIN


def ensure_fd_limit(settings: Settings) -> str | None:
    """Raise the soft RLIMIT_NOFILE to `fd_budget` if the hard limit allows; else a warning sentence."""
    need = fd_budget(settings)
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= need:
        return None
    if hard == resource.RLIM_INFINITY or hard >= need:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (need, hard))
            return None
    return (
        f"the open-file limit is {soft} (hard {hard}) but the connection limits need {need}: raise `ulimit -n` "
        "(LimitNOFILE= in systemd) or lower KEYBRAKE_MAX_CONNECTIONS; past the limit new connections fail"
    )
