"""The ASGI gate in front of the admin API: the token is checked before any body is read.

Order, for every admin request except the open paths (`/healthz`, `/readyz`, `/openapi.json`,
the docs page `/docs` with its assets, `/metrics` with KEYBRAKE_METRICS_PUBLIC=1, and a GET or
POST on exactly `/v1/approvals/<approval id>/decide`, a signed decision link whose route checks
its signature before anything else, `decision_link`):

1. the admin token from the `Authorization` header, looked up by its hash (one store read). A
   valid token always gets in, however many failures its address has had;
2. a failure answers 401, or 429 `too_many_auth_failures` past 10 failures a minute from the
   address (logged either way). The body of a refused request is never read: the answer says
   `Connection: close` and the connection goes with it;
3. the body, capped at 1 MiB (8 KiB for a decision link; Content-Length checked before reading, streamed bytes counted):
   past it 413 `body_too_large`, and the connection is closed. A JSON body holding a lone
   UTF-16 surrogate escape (`"\\ud800"`: valid JSON, not text) is 400 `invalid_request`.

The caller found in step 1 is put in the scope as a `keybrake.admin.auth.Principal`
(`SCOPE_PRINCIPAL`), so it is looked up once; every route requires it through one dependency
(`keybrake.admin.auth.require_admin`). The web console's paths (`/console…`) take no bearer
token: their session cookie is resolved by `_session`, and the console's pages send a request
without a live session to the sign-in page. Any exception the admin app lets through is logged
(redacted) and answered 500 in the admin error shape.
"""

from __future__ import annotations

import ipaddress
import json
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Awaitable, Callable
from typing import Any

from keybrake.admin.auth import SCOPE_PRINCIPAL, Principal
from keybrake.admin.body_checks import has_lone_surrogate, has_nul
from keybrake.admin.sessions import (
    SCOPE_SESSION_COOKIE,
    SCOPE_SESSION_PROBLEM,
    console_path,
    cookies_of,
    resolve,
    with_console_headers,
)
from keybrake.core.approvals import decision_path_id
from keybrake.core.errors import EnforcementUnavailable
from keybrake.logs import event, redact
from keybrake.runtime import Runtime
from keybrake.store.base import AdminTokenRecord
from keybrake.tokens import VAULT_PREFIX

log = logging.getLogger("keybrake.admin")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

MAX_ADMIN_BODY_BYTES = 1024 * 1024
MAX_LINK_BODY_BYTES = 8 * 1024  # a decision link's form: at most a reason of 500 characters
LINK_METHODS = frozenset({"GET", "POST"})
FAILURES_PER_MINUTE = 10
INTERNAL_ERROR = "internal error (logged); read the resource before retrying a change"
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json", "/docs"})
OPEN_PREFIXES = ("/docs/assets/",)  # the docs page's script, stylesheet and icon (admin/routes/docs.py)


class AuthFailures:
    """Failed admin authentications per client address over the last minute.

    Memory is bounded: at most `max_addresses` addresses (least recently failing dropped first)
    and `FAILURES_PER_MINUTE + 1` timestamps each. IPv6 clients count per /64, the block one
    host usually holds.
    """

    def __init__(self, max_addresses: int = 10_000) -> None:
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._max = max_addresses

    def failed(self, client: str) -> int:
        """Record one failure from `client`; returns the failures in the last minute, this one included."""
        now = time.monotonic()
        q = self._seen.pop(client, None)
        if q is None:
            q = deque(maxlen=FAILURES_PER_MINUTE + 1)
        while q and q[0] < now - 60:
            q.popleft()
        q.append(now)
        self._seen[client] = q
        while len(self._seen) > self._max:
            self._seen.popitem(last=False)
        return len(q)

    def __len__(self) -> int:
        return len(self._seen)


def decision_link(scope: Scope) -> bool:
    """A GET or POST on exactly `/v1/approvals/<apr_ id>/decide` (the decoded path matched whole,
    `core.approvals.DECISION_PATH`): an approve / deny link, let in without an admin token. Any
    other method or any other path, however close, needs the token as before."""
    return scope.get("method") in LINK_METHODS and decision_path_id(scope["path"]) is not None


def client_address(scope: Scope) -> str:
    """The address failures are counted under: the peer (after trusted forwarded headers),
    an IPv6 peer's /64, or "local" for a unix-socket peer."""
    client = scope.get("client")
    if not client:
        return "local"
    host = str(client[0])
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host[:100]
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is None:
        return str(ipaddress.ip_network(f"{ip}/64", strict=False))
    return str(ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else str(ip)


def error_body(code: str, message: str, field: str | None = None) -> bytes:
    """The admin error shape (docs/api.md)."""
    return json.dumps(
        {"error": {"type": "keybrake_error", "code": code, "message": message, "field": field}},
        separators=(",", ":"),
    ).encode()


async def send_error(send: Send, status: int, code: str, message: str, *, close: bool) -> None:
    headers = [(b"content-type", b"application/json; charset=utf-8"), (b"cache-control", b"no-store")]
    if close:
        headers.append((b"connection", b"close"))  # the unread body goes with the connection
    body = error_body(code, message)
    headers.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


# How to get a working admin token, added to every refusal of one. It never names a file or a path
# (the bootstrap token file, the data directory): on the single-listener layout an agent on the
# proxy port may be the one asking, and a file-reading tool would make it admin. The docs say
# where the bootstrap token is kept (quickstart, operations).
RECOVERY = " To get an admin token, run `keybrake admin-tokens create --label NAME` on the server host."


# HTTP authentication schemes (IANA registry, and the common unregistered ones) a refusal may
# name. Whatever else a header starts with is never echoed: a token sent without 'Bearer ', or
# with a typo in front of it, is a secret.
KNOWN_SCHEMES = {
    s.lower(): s
    for s in (
        "Basic", "Digest", "Negotiate", "NTLM", "HOBA", "Mutual", "OAuth", "SCRAM-SHA-1", "SCRAM-SHA-256",
        "vapid", "DPoP", "GNAP", "Concealed", "PrivateToken", "Token", "ApiKey", "AWS4-HMAC-SHA256",
    )
}  # fmt: skip


def header_problem(values: list[str]) -> str | None:
    """What is wrong with a request's `Authorization` header values (decoded latin-1), or None
    when there is exactly one of the form `Bearer <token>`."""
    if not values:
        return "no Authorization header: send 'Authorization: Bearer <admin token>'."
    if len(values) > 1:
        return f"{len(values)} Authorization headers: send exactly one, 'Authorization: Bearer <admin token>'."
    scheme, _, token = values[0].strip().partition(" ")
    if not scheme:
        return (
            "the Authorization header is empty: send 'Authorization: Bearer <admin token>' (was the variable or"
            " file the token was read from empty?)."
        )
    if scheme.lower() != "bearer":
        if not token and not (scheme.isascii() and scheme.isalpha()):
            return (
                "the Authorization header must be 'Bearer <admin token>', not a token alone: put 'Bearer ' before it."
            )
        named = KNOWN_SCHEMES.get(scheme.lower())  # never the header's own text: it may be a secret
        return (
            f"the Authorization header must be 'Bearer <admin token>', not {named!r}."
            if named
            else ("the Authorization header must be 'Bearer <admin token>': it starts with something else.")
        )
    token = token.strip()
    if not token:
        return (
            "the Authorization header says 'Bearer' but carries no token: the variable or file the token was"
            " read from was empty or missing."
        )
    if not token.isprintable() or any(c.isspace() for c in token):
        return "the admin token holds a space or a control character: send it alone, as printed when it was made."
    return None


class AdminGate:
    """ASGI middleware: authenticate from the headers, then read (and cap) the body."""

    def __init__(self, app: Any, rt: Runtime) -> None:
        self.app = app
        self.rt = rt
        self.failures = AuthFailures()
        if hasattr(app, "state"):
            app.state.auth_failures = self.failures  # the console's sign-in counts its failures here too

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path = scope["path"]
        link = decision_link(scope)
        if console_path(path):
            send = with_console_headers(send)
            if await self._session(scope, send):
                return
        elif not (
            path in OPEN_PATHS
            or path.startswith(OPEN_PREFIXES)
            or (path == "/metrics" and self.rt.settings.metrics_public)
            or link
        ):
            refusal = await self._authenticate(scope)
            if refusal is not None:
                await send_error(send, *refusal, close=True)
                return
        cap = MAX_LINK_BODY_BYTES if link else MAX_ADMIN_BODY_BYTES
        try:
            body = await _read_capped(scope, receive, cap)
        except _Gone:
            return  # the client left before its body arrived: nothing to do, no one to answer
        if body is None:
            await send_error(
                send, 413, "body_too_large", f"admin request bodies are limited to {cap} bytes; nothing was changed",
                close=True,
            )  # fmt: skip
            return
        if has_lone_surrogate(body):
            await send_error(
                send,
                400,
                "invalid_request",
                "the body holds a lone UTF-16 surrogate escape (such as \\ud800), which is not text",
                close=False,
            )
            return
        if has_nul(scope, body):
            # No store keeps NUL in text (PostgreSQL refuses it): refused here as input, not
            # failed there as an outage.
            await send_error(
                send, 400, "invalid_request", "the path, query or body holds a NUL character (\\u0000)", close=False
            )
            return
        await self._run(scope, replay_body(body, receive), send)

    async def _authenticate(self, scope: Scope) -> tuple[int, str, str] | None:
        """None when the caller is known (its `Principal` put in the scope), else (status, code, message).

        The one source here is the bearer header; the console's cookie is resolved by `_session`.
        """
        values = [v for k, v in scope["headers"] if k == b"authorization"]
        problem = header_problem([v.decode("latin-1") for v in values])
        if problem is not None:
            return self._failure(scope, "no bearer token", 401, "admin_token_invalid", problem + RECOVERY)
        token = values[0].decode("latin-1").strip().partition(" ")[2].strip()
        if token.startswith(VAULT_PREFIX):
            return self._failure(scope, "a vault key was sent", 401, "admin_token_required",
                                 "vault keys cannot call the admin API; use an admin token." + RECOVERY)  # fmt: skip
        try:
            rec: AdminTokenRecord | None = await self.rt.token_store.admin_token_by_hash(self.rt.hash_token(token))
        except EnforcementUnavailable as exc:
            event(log, "admin call failed: store unavailable", logging.ERROR, error=str(exc))
            return 503, "enforcement_unavailable", "the store is unavailable; nothing was changed"
        if rec is None or rec.revoked_at is not None:
            return self._failure(scope, "unknown or revoked token", 401, "admin_token_invalid",
                                 "unknown or revoked admin token." + RECOVERY)  # fmt: skip
        scope[SCOPE_PRINCIPAL] = Principal.from_token(rec)
        return None

    async def _session(self, scope: Scope, send: Send) -> bool:
        """A console request: the first of its session cookies that is a live session is resolved
        into the scope's Principal (`via="session"`) and its value kept (SCOPE_SESSION_COOKIE: the
        one the CSRF token is checked against); the console's pages decide what a request without
        one gets (the sign-in page, saying why the first cookie is none). True when it was answered
        here (503: the store cannot say whether the session lives)."""
        why: str | None = None
        for cookie in cookies_of(scope["headers"]):
            try:
                found = await resolve(self.rt, cookie)
            except EnforcementUnavailable as exc:
                event(log, "console request failed: store unavailable", logging.ERROR, error=str(exc))
                await send_error(send, 503, "enforcement_unavailable", "the store is unavailable; nothing was changed",
                                 close=True)  # fmt: skip
                return True
            if found.session is not None and found.token is not None:
                scope[SCOPE_PRINCIPAL] = Principal(found.token.id, "session", found.token, found.session.id)
                scope[SCOPE_SESSION_COOKIE] = cookie
                return False
            why = why or found.why
        if why is not None:
            scope[SCOPE_SESSION_PROBLEM] = why
        return False

    def _failure(self, scope: Scope, why: str, status: int, code: str, message: str) -> tuple[int, str, str]:
        client = client_address(scope)
        count = self.failures.failed(client)
        if count > FAILURES_PER_MINUTE:
            event(log, "admin authentication refused: too many failures", logging.WARNING, client=client, reason=why)
            return (
                429,
                "too_many_auth_failures",
                f"more than {FAILURES_PER_MINUTE} failed admin authentications in a minute from this address; "
                "a valid admin token is still accepted",
            )
        event(log, f"admin authentication failed: {why}", logging.WARNING, client=client)
        return status, code, message

    async def _run(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The admin app; an exception it lets through is logged (redacted) and answered 500."""
        started = False

        async def tracking_send(message: dict[str, Any]) -> None:
            nonlocal started
            started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception as exc:
            event(log, "admin call failed: internal error", logging.ERROR, path=scope["path"][:200],
                  error=f"{type(exc).__name__}: {redact(str(exc))[:300]}")  # fmt: skip
            if not started:
                await send_error(send, 500, "internal_error", INTERNAL_ERROR, close=True)


class _Gone(Exception):
    """The client disconnected while its body was being read."""


async def _read_capped(scope: Scope, receive: Receive, cap: int) -> bytes | None:
    """The whole body, or None once it passes `cap` bytes (declared or streamed).

    Raises _Gone if the client disconnects first.
    """
    for k, v in scope["headers"]:
        if k == b"content-length" and v.strip().isdigit() and int(v) > cap:
            return None
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] != "http.request":
            raise _Gone
        chunk = message.get("body", b"")
        size += len(chunk)
        if size > cap:
            return None
        chunks.append(chunk)
        if not message.get("more_body", False):
            break
    return b"".join(chunks)


def replay_body(body: bytes, receive: Receive) -> Receive:
    """A receive that hands the app the body read already, then waits for the disconnect."""
    sent = False

    async def replay() -> dict[str, Any]:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()

    return replay
