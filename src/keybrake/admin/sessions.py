"""Web console sessions (docs/console.md): sign-in with an admin token opens one; its cookie is
the console's credential on every later request until sign-out, expiry, or the token's revocation.

The cookie holds 256 random bits (`keybrake_session`); the store keeps only their HMAC under the
store's pepper (like tokens). The CSRF token of a session is an HMAC of the cookie value, so it is
bound to the session and cannot be made without it. The cookie authenticates the console's own
pages only (`/console/…`): the JSON API under `/v1` takes an `Authorization: Bearer` token alone,
so no page on another site can make a signed-in browser call it.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from keybrake.runtime import Runtime
from keybrake.store.records import AdminTokenRecord, ConsoleSession
from keybrake.tokens import new_id

Send = Callable[[dict[str, Any]], Awaitable[None]]
COOKIE = "keybrake_session"
SCOPE_SESSION_PROBLEM = "keybrake.console_session_problem"  # why a cookie sent is no live session
SCOPE_SESSION_COOKIE = "keybrake.console_session_cookie"  # the cookie value of the live session found
_CSRF_CONTEXT = b"keybrake console csrf v1"


@dataclass(frozen=True, slots=True)
class Resolved:
    """The outcome of a cookie lookup: `token` and `session` for a live session, else `why` it is not one."""

    session: ConsoleSession | None
    token: AdminTokenRecord | None
    why: str | None  # "expired" | "signed_out" | "token_revoked" | "unknown"


async def open_session(rt: Runtime, token: AdminTokenRecord) -> tuple[str, ConsoleSession]:
    """A new session for a valid admin token: (cookie value, session). Lasts
    `settings.console_session_s` seconds (KEYBRAKE_CONSOLE_SESSION). Raises EnforcementUnavailable."""
    now = rt.token_store.now_ms()
    cookie = secrets.token_urlsafe(32)
    rec = ConsoleSession(new_id("cs_"), token.id, now, now + rt.settings.console_session_s * 1000, None)
    await rt.token_store.open_console_session(rec, rt.hash_token(cookie))
    return cookie, rec


async def resolve(rt: Runtime, cookie: str) -> Resolved:
    """What the cookie value stands for, checked now (expiry, sign-out, the token's revocation).
    Raises EnforcementUnavailable when the store cannot answer."""
    if not cookie or len(cookie) > 100:
        return Resolved(None, None, "unknown")
    found = await rt.token_store.console_session(rt.hash_token(cookie))
    if found is None:
        return Resolved(None, None, "unknown")
    session, token = found
    if session.ended_at is not None:
        return Resolved(None, None, "signed_out")
    if token.revoked_at is not None:
        return Resolved(None, None, "token_revoked")
    if session.expires_at <= rt.token_store.now_ms():
        return Resolved(None, None, "expired")
    return Resolved(session, token, None)


async def end_session(rt: Runtime, cookie: str) -> bool:
    """Sign-out: True when a live session was ended. Raises EnforcementUnavailable."""
    return await rt.token_store.end_console_session(rt.hash_token(cookie))


def csrf_token(cookie: str) -> str:
    """The CSRF token of the session whose cookie value is `cookie` (64 hex characters)."""
    return hmac.new(cookie.encode(), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


def csrf_valid(cookie: str, sent: str | None) -> bool:
    """True when `sent` is the session's CSRF token (compared in constant time)."""
    return bool(sent) and hmac.compare_digest(csrf_token(cookie), str(sent))


MAX_SESSION_COOKIES = 4  # `keybrake_session` cookies of one request looked up, at most


def cookies_of(headers: list[tuple[bytes, bytes]]) -> list[str]:
    """The `keybrake_session` cookies' values from raw ASGI headers, in the order sent, at most
    MAX_SESSION_COOKIES. A browser may send several: another port of the same host can set one
    (ports do not separate cookies), and one with a longer path is sent first."""
    out: list[str] = []
    for k, v in headers:
        if k != b"cookie":
            continue
        for part in v.decode("latin-1").split(";"):
            name, _, value = part.strip().partition("=")
            if name == COOKIE and value and len(out) < MAX_SESSION_COOKIES:
                out.append(value)
    return out


CONSOLE_PREFIX = "/console"


# Every console answer carries these (docs/console.md, security): scripts, styles, images and
# fetches from the console itself only, no inline script or style, no framing, forms posted back
# to it only.
CONSOLE_HEADERS = (
    (b"content-security-policy", b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self';"
     b" connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"cross-origin-opener-policy", b"same-origin"),
)  # fmt: skip


def console_path(path: str) -> bool:
    """True for the web console's pages (`/console`, `/console/…`): authenticated by the session
    cookie there (`_session`), never by a bearer token, and the cookie nowhere else."""
    return path == CONSOLE_PREFIX or path.startswith(CONSOLE_PREFIX + "/")


def with_console_headers(send: Send) -> Send:
    """`send` adding CONSOLE_HEADERS (and `cache-control: no-store` unless set) to the answer."""

    async def sending(message: dict[str, Any]) -> None:
        if message["type"] == "http.response.start":
            headers = [h for h in message.get("headers", []) if h[0].lower() not in CONSOLE_NAMES]
            if not any(k.lower() == b"cache-control" for k, _ in headers):
                headers.append((b"cache-control", b"no-store"))
            message = {**message, "headers": [*headers, *CONSOLE_HEADERS]}
        await send(message)

    return sending


CONSOLE_NAMES = frozenset(k for k, _ in CONSOLE_HEADERS)
