"""The ASGI application: routing, the proxy adapter, and the lifespan that runs the jobs.

Admin paths (docs/api.md) go to the FastAPI admin app and are never forwarded; other paths
under a name no vendor may take (`/docs/`, `/metrics/x`, `/_keybrake/…`) are answered here;
everything else goes through the proxy pipeline as raw ASGI — a router on the hot path costs
CPU and buys nothing there.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

from prometheus_client import CollectorRegistry

from keybrake import deadline
from keybrake.admin.api import build_admin_app, warm_routes
from keybrake.admin.budgets import log_unusable_zones
from keybrake.admin.gate import AdminGate, error_body
from keybrake.admin.sessions import console_path
from keybrake.app.body import BodyBudget, BodyBudgetExceeded, read_body
from keybrake.app.mcp_route import PATH as MCP_PATH
from keybrake.app.mcp_route import LazyMcpFront, serve_mcp
from keybrake.app.self_view import self_view
from keybrake.console import mount as mount_console
from keybrake.core.approvals import link_secret
from keybrake.core.errors import Denial, EnforcementUnavailable
from keybrake.core.jsonfmt import dumps
from keybrake.core.request import ProxyRequest
from keybrake.core.upstream import Upstream
from keybrake.jobs import JobRunner, build_jobs
from keybrake.jobs.alerts import Alerts
from keybrake.jobs.housekeeping import Housekeeping
from keybrake.listener import SCOPE_KEY
from keybrake.logs import event, redact
from keybrake.net.upstream import AiohttpUpstream
from keybrake.proxy.approval import CLIENT_GONE
from keybrake.proxy.metrics import ProxyMetrics
from keybrake.proxy.pipeline import Pipeline
from keybrake.proxy.render import JSON_TYPE, ProxyResponse
from keybrake.proxy.settler import SettleWriter
from keybrake.runtime import Runtime
from keybrake.vendors import RESERVED_NAMES

log = logging.getLogger("keybrake")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_ADMIN_ROOTS = frozenset({"keys", "credentials", "admin_tokens", "audit", "spend", "budgets", "alerts", "approvals"})
_ADMIN_EXACT = frozenset({"/openapi.json", "/docs", "/healthz", "/readyz", "/metrics"})
_BOTH_LISTENERS = frozenset({"/healthz", "/readyz"})
# First path segments no vendor may take (vendors.RESERVED_NAMES) whose paths that are not admin
# routes are answered here, unread and unaudited: `/_keybrake/…` (the agent's own endpoints) and
# `/docs/`, `/metrics/x`, … (the admin API's 404). `v1` is not among them: a `/v1/…` path that is
# not an admin route is an unprefixed vendor call, routed by its key's vendor (docs/sdk-stripe.md).
_RESERVED_ROOTS = RESERVED_NAMES - {"v1"}
_NO_ADMIN_ENDPOINT = error_body("not_found", "no such admin endpoint")


def console_elsewhere(settings: Any) -> str:
    """Where the web console is, for a request that asked for it on the proxy port."""
    if settings.admin_socket is not None:
        return "the web console is served on the admin listener only (this server's admin socket), not on this port"
    if settings.admin_port:
        host = settings.admin_host or "127.0.0.1"
        host = f"[{host}]" if ":" in host else host
        return f"the web console is served on the admin listener only: open http://{host}:{settings.admin_port}/console"
    if settings.admin_port == 0:
        return "the web console is served on the admin listener only, not on this port"
    return (
        "the web console is served on the admin listener only: start Keybrake with --admin-port 8081"
        " (KEYBRAKE_ADMIN_PORT) and open http://127.0.0.1:8081/console"
    )


def is_admin_path(path: str) -> bool:
    """Decoded path → admin surface? Checked on the decoded path so no encoding sneaks past."""
    if path in _ADMIN_EXACT or path.startswith("/docs/assets/"):
        return True
    parts = path.split("/")
    return len(parts) >= 3 and parts[1] == "v1" and parts[2] in _ADMIN_ROOTS


def _first_segment(path: str) -> str:
    """`/docs/x` → `docs`, `/metrics` → `metrics`, `/` → `` (one scan, no split)."""
    end = path.find("/", 1)
    return path[1:] if end < 0 else path[1:end]


class KeybrakeApp:
    """One process's application over a `Runtime`: the proxy pipeline, the admin app, the jobs.

    `upstream` replaces both HTTP clients (the proxy's and the alerts'), for tests.
    """

    def __init__(self, rt: Runtime, *, upstream: Upstream | None = None) -> None:
        self.rt = rt
        self.instance_id = f"ins_{uuid.uuid4().hex[:20]}"
        self.registry = CollectorRegistry()  # served at /metrics (docs/operations.md, metrics)
        self.metrics = ProxyMetrics(self.registry)
        self.recovered_total = self.metrics.recovered
        self.shed_total = self.metrics.shed
        self.upstream = upstream or AiohttpUpstream(
            timeout_s=rt.settings.upstream_timeout_s,
            connect_timeout_s=rt.settings.upstream_connect_timeout_s,
            max_response_bytes=rt.settings.max_response_bytes,
            explicit_hosts=rt.settings.upstream_hosts,
        )
        self.settler = SettleWriter(rt.store, self.metrics)
        # Alerts have a client of their own: a short timeout (KEYBRAKE_ALERT_TIMEOUT), so a silent
        # receiver never holds a connection the proxy needs.
        self.alert_upstream = upstream or AiohttpUpstream(
            timeout_s=rt.settings.alert_timeout_s,
            connect_timeout_s=min(rt.settings.alert_timeout_s, rt.settings.upstream_connect_timeout_s),
            max_response_bytes=64 * 1024,
            explicit_hosts=rt.settings.upstream_hosts,
        )
        self.alerts = Alerts(
            rt.store,
            rt.sealer,
            self.alert_upstream,
            rt.settings,
            instance_id=self.instance_id,
            link_secret=link_secret(rt.pepper),  # approve / deny links (KEYBRAKE_PUBLIC_URL)
        )
        self.body_budget = BodyBudget(rt.settings.max_buffered_body_bytes)
        self.pipeline = Pipeline(
            store=rt.store,
            vendors=rt.vendors,
            upstream=self.upstream,
            settings=rt.settings,
            sealer=rt.sealer,
            pepper=rt.pepper,
            instance_id=self.instance_id,
            metrics=self.metrics,
            settle=self.settler.submit,
            alerts=self.alerts,
            approval_sink=self.alerts,
        )
        self.mcp = LazyMcpFront(
            self.pipeline,
            max_body_bytes=rt.settings.max_body_bytes or max(v.max_body_bytes for v in rt.vendors.values()),
        )
        self.admin = build_admin_app(
            rt,
            self.registry,
            before_read=self.settler.flush,
            alerts=self.alerts,
            wake_approval=self.pipeline.approvals.wake,  # a decision made here wakes its holder here at once
        )
        mount_console(self.admin)
        self._admin: Any = AdminGate(self.admin, rt)
        self.housekeeping = Housekeeping(rt.store, rt.settings, self.instance_id, self.recovered_total)
        self.jobs = JobRunner(
            build_jobs(
                store=rt.store,
                settings=rt.settings,
                vendors=rt.vendors,
                sealer=rt.sealer,
                upstream=self.upstream,
                alerts=self.alerts,
                housekeeping=self.housekeeping,
                metrics=self.metrics,
            )
        )
        # Run at the end of a clean stop, inside the server's shutdown (a server stopped by a
        # signal re-raises it once serving ends, so code after serving may never run).
        self.stop_hooks: list[Callable[[], None]] = []

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
        elif scope["type"] == "http":
            path = scope["path"]
            # Which listener the request came in on (keybrake.listener); a scope without one is
            # treated as the proxy's whenever the admin API has a listener of its own.
            role = scope.get(SCOPE_KEY) or ("proxy" if self.rt.settings.separate_admin else "all")
            if console_path(path):  # the web console: the admin listener only, never the agents' port
                if role == "admin":
                    await self._admin(scope, receive, send)
                else:
                    await _send(send, _not_here(console_elsewhere(self.rt.settings)))
            elif is_admin_path(path):
                if role == "proxy" and path not in _BOTH_LISTENERS:
                    await _send(send, _not_here("the admin API is served on its own listener, not on this port"))
                else:
                    await self._admin(scope, receive, send)
            elif role == "admin":
                await _send(send, _not_here("this is the admin listener; proxied calls go to the proxy port"))
            elif (root := _first_segment(path)) not in _RESERVED_ROOTS:
                await self._proxy(scope, receive, send)
            elif path == MCP_PATH:
                rt = self.rt
                await serve_mcp(self.mcp, self.pipeline, rt.settings, self.body_budget, scope, receive, send, _send)
            elif path == "/_keybrake/self" and scope["method"] == "GET":
                await _send(send, await self_view(self.rt, scope))
            elif root == "_keybrake":
                await _send(
                    send,
                    ProxyResponse(
                        404,
                        [("content-type", "application/json; charset=utf-8")],
                        b'{"error":{"type":"keybrake_error","code":"not_found","message":"no such Keybrake endpoint; '
                        b'agents use /_keybrake/mcp (POST, MCP) and /_keybrake/self (GET), exactly so spelt"}}',
                    ),
                )
            else:  # /docs/, /metrics/x, …: never an agent call, no audit row
                await _send(
                    send,
                    ProxyResponse(
                        404, [("content-type", JSON_TYPE), ("cache-control", "no-store")], _NO_ADMIN_ENDPOINT
                    ),
                )

    # -- proxy adapter --------------------------------------------------------------------

    async def _proxy(self, scope: Scope, receive: Receive, send: Send) -> None:
        headers = tuple((k.decode("latin-1").lower(), v.decode("latin-1")) for k, v in scope["headers"])
        raw_path: bytes = scope.get("raw_path") or scope["path"].encode()
        client = scope.get("client")
        # No body is read before the vault key is known: a request without one is refused unread
        # and its connection closed (the body goes with it).
        head = ProxyRequest(
            scope["method"], raw_path, scope.get("query_string", b""), headers, b"", client[0] if client else ""
        )
        key, refusal = await self.pipeline.admit(head)
        if refusal is not None:
            resp = await self.pipeline.handle_denial(head, refusal)
            resp.headers.append(("connection", "close"))
            await _send(send, resp)
            return
        limit = self.rt.settings.max_body_bytes or (
            self.rt.vendors[key.vendor].max_body_bytes
            if key is not None and key.vendor in self.rt.vendors
            else max(v.max_body_bytes for v in self.rt.vendors.values())
        )
        reading = time.monotonic()
        try:
            body, too_large, gone = await read_body(receive, limit, headers, self.body_budget)
        except BodyBudgetExceeded:
            busy = Denial(
                "enforcement_unavailable",
                "Keybrake is holding too many request bodies at once (KEYBRAKE_MAX_BUFFERED_BODY_BYTES); nothing "
                "was forwarded. Retry shortly.",
            )
            resp = await self.pipeline.handle_denial(head, busy)
            resp.headers.append(("connection", "close"))
            await _send(send, resp)
            return
        if gone:
            return  # the client left mid-body: a truncated request is never forwarded, no one to answer
        if (d := deadline.current()) is not None:
            d.extend(time.monotonic() - reading)  # the client's upload time is not the store's
        CLIENT_GONE.set(functools.partial(_disconnected, receive))  # a call held for approval watches it
        try:
            await self._answer(scope, send, raw_path, headers, client, body, too_large, limit)
        finally:
            if not too_large:
                self.body_budget.give(len(body))

    async def _answer(
        self,
        scope: Scope,
        send: Send,
        raw_path: bytes,
        headers: tuple[tuple[str, str], ...],
        client: Any,
        body: bytes,
        too_large: bool,
        limit: int,
    ) -> None:
        req = ProxyRequest(
            scope["method"],
            raw_path,
            scope.get("query_string", b""),
            headers,
            b"" if too_large else body,
            client[0] if client else "",
        )
        if too_large:
            resp = await self.pipeline.handle_denial(
                req,
                Denial("body_too_large", f"The request body is larger than {limit} bytes (KEYBRAKE_MAX_BODY_BYTES)."),
            )
        else:
            enc = [v.strip().lower() for k, v in headers if k == "content-encoding"]
            if any(e not in ("", "identity") for e in enc):
                resp = await self.pipeline.handle_denial(
                    req,
                    Denial(
                        "unsupported_media_type",
                        "Compressed request bodies (Content-Encoding) are not accepted; send the body uncompressed.",
                    ),
                )
            else:
                resp = await self.pipeline.handle(req)
        await _send(send, resp)

    # -- lifespan -------------------------------------------------------------------------

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:  # reported to the server, which refuses to start
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    def begin_stop(self) -> None:
        """The server starts stopping (before it waits for open requests): end every held call."""
        self.pipeline.approvals.stop()

    async def startup(self) -> None:
        """Build the admin API's route tables (off the loop), register this instance and recover
        what stopped replicas left, then start the jobs."""
        try:  # before the listener opens: FastAPI would build them on the loop, at the first request
            await asyncio.to_thread(warm_routes, self.admin)
        except Exception as exc:  # only slower admin requests at first: logged, start goes on
            event(log, "admin routes not prepared ahead; FastAPI builds them on first use", logging.ERROR,
                  error=f"{type(exc).__name__}: {redact(str(exc))[:300]}")  # fmt: skip
        await self.housekeeping.register()
        await log_unusable_zones(self.rt.store)
        self.jobs.start()
        event(log, "keybrake started", instance=self.instance_id)

    async def shutdown(self) -> None:
        """Stop the jobs, settle what is queued, deregister, close the clients, run `stop_hooks`."""
        await self.mcp.stop()
        await self.jobs.stop()
        if not await self.settler.flush(self.rt.settings.graceful_shutdown_s):
            event(log, "stopping with rows not yet settled; recovery marks them outcome_unknown", logging.ERROR)
        with contextlib.suppress(EnforcementUnavailable):
            await self.rt.store.deregister_instance(self.instance_id)
        await self.upstream.close()
        if self.alert_upstream is not self.upstream:
            await self.alert_upstream.close()
        for hook in self.stop_hooks:
            hook()
        event(log, "keybrake stopped", instance=self.instance_id)


def _not_here(message: str) -> ProxyResponse:
    """404 for a path served on the other listener; the body is not read (the connection closes)."""
    body = dumps({"error": {"type": "keybrake_error", "code": "not_found", "message": message}})
    return ProxyResponse(404, [("content-type", JSON_TYPE), ("connection", "close")], body)


async def _disconnected(receive: Receive) -> None:
    """Return once the client has disconnected (after the whole body was read, ASGI's next
    message is `http.disconnect`, sent when the connection closes)."""
    while (await receive())["type"] != "http.disconnect":
        pass


async def _send(send: Send, resp: ProxyResponse) -> None:
    headers = [(k.encode("latin-1"), v.encode("latin-1")) for k, v in resp.headers]
    headers.append((b"content-length", str(len(resp.body)).encode()))
    await send({"type": "http.response.start", "status": resp.status, "headers": headers})
    await send({"type": "http.response.body", "body": resp.body})


__all__ = ["KeybrakeApp", "is_admin_path"]
