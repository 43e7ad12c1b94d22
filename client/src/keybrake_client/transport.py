"""Sending an `Op` to the admin API: auth, timeouts, retries of idempotent calls, typed answers."""

from __future__ import annotations

import asyncio
import json
import time
from decimal import Decimal
from typing import Any, TypeVar

import httpx
from pydantic import BaseModel

from keybrake_client.errors import KeybrakeAPIError, KeybrakeConnectionError
from keybrake_client.ops import Op

M = TypeVar("M", bound=BaseModel)

# Answers after which the same idempotent request may succeed: the store or the listener was
# busy (503), or a load balancer in front of Keybrake lost the answer (502, 504).
RETRY_STATUSES = frozenset({502, 503, 504})
DEFAULT_TIMEOUT_S = 30.0
DEFAULT_RETRIES = 2
USER_AGENT = "keybrake-client/0.1"


def check_token(admin_token: str) -> str:
    """The admin token, refused early when it is a vault key or empty (never echoed)."""
    if not isinstance(admin_token, str) or not admin_token.strip():
        raise ValueError("admin_token is empty: pass the admin token (kb_admin_… or KEYBRAKE_ADMIN_TOKEN's value)")
    if admin_token.startswith("vault_key_"):
        raise ValueError("admin_token is a vault key: the admin API takes an admin token, never a vault key")
    return admin_token


def headers(admin_token: str) -> dict[str, str]:
    """The headers of every admin request."""
    return {"Authorization": f"Bearer {admin_token}", "User-Agent": USER_AGENT, "Accept": "application/json"}


def decode(resp: httpx.Response) -> Any:
    """The JSON body with money as exact `Decimal`s."""
    return json.loads(resp.content, parse_float=Decimal)


def api_error(resp: httpx.Response) -> KeybrakeAPIError:
    """The `KeybrakeAPIError` of an error answer (Keybrake's `{"error": {code, message, field}}`,
    or, from something in front of Keybrake, the status with the start of the body)."""
    try:
        err = decode(resp)["error"]
        return KeybrakeAPIError(resp.status_code, str(err["code"]), str(err["message"]), err.get("field"))
    except (ValueError, KeyError, TypeError):
        text = resp.text[:200].strip() or resp.reason_phrase
        return KeybrakeAPIError(resp.status_code, "http_error", f"not a Keybrake answer: {text}")


def result(op: Op[M], resp: httpx.Response) -> M:
    """The answer as `op.model`, or `KeybrakeAPIError`."""
    if resp.status_code >= 400:
        raise api_error(resp)
    assert op.model is not None
    return op.model.model_validate(decode(resp))


def request_kwargs(op: Op[Any]) -> dict[str, Any]:
    """httpx keyword arguments for `op`."""
    kw: dict[str, Any] = {"params": dict(op.query), "headers": dict(op.headers)}
    if op.body is not None:
        kw["content"] = json.dumps(op.body, default=str).encode()
        kw["headers"]["Content-Type"] = "application/json"
    return kw


def should_retry(op: Op[Any], attempt: int, retries: int, resp: httpx.Response | None) -> bool:
    """Whether to send `op` again: only idempotent ops, only after a connection error or a
    502/503/504, at most `retries` times."""
    if not op.idempotent or attempt >= retries:
        return False
    return resp is None or resp.status_code in RETRY_STATUSES


def backoff(attempt: int, resp: httpx.Response | None) -> float:
    """Seconds before the next attempt: `Retry-After` when given (≤ 5 s), else 0.25 s doubling."""
    if resp is not None:
        try:
            return min(5.0, max(0.0, float(resp.headers.get("Retry-After", ""))))
        except ValueError:
            pass
    return float(min(5.0, 0.25 * 2**attempt))


def send(client: httpx.Client, op: Op[Any], retries: int) -> httpx.Response:
    """Send `op`, retrying as `should_retry` says; raises KeybrakeConnectionError when unreachable."""
    attempt = 0
    while True:
        try:
            resp = client.request(op.method, op.url(), **request_kwargs(op))
        except httpx.TransportError as exc:
            if not should_retry(op, attempt, retries, None):
                raise KeybrakeConnectionError(f"{op.method} {op.path}: {type(exc).__name__}: {exc}") from exc
            resp = None
        if resp is not None and not should_retry(op, attempt, retries, resp):
            return resp
        time.sleep(backoff(attempt, resp))
        attempt += 1


async def asend(client: httpx.AsyncClient, op: Op[Any], retries: int) -> httpx.Response:
    """`send` for the async client."""
    attempt = 0
    while True:
        try:
            resp = await client.request(op.method, op.url(), **request_kwargs(op))
        except httpx.TransportError as exc:
            if not should_retry(op, attempt, retries, None):
                raise KeybrakeConnectionError(f"{op.method} {op.path}: {type(exc).__name__}: {exc}") from exc
            resp = None
        if resp is not None and not should_retry(op, attempt, retries, resp):
            return resp
        await asyncio.sleep(backoff(attempt, resp))
        attempt += 1


class AdminBase:
    """What `Keybrake` and `AsyncKeybrake` share besides their I/O: `url` (the admin API, no
    trailing slash), `proxy_url` (where agents reach the proxy; default `url`), `retries`, and
    `_http_settings`, the keyword arguments of their httpx client (base URL, auth headers, timeout
    in seconds). Raises ValueError for an empty admin token (`check_token`)."""

    def __init__(self, url: str, admin_token: str, proxy_url: str | None, timeout: float, retries: int) -> None:
        self.url = url.rstrip("/")
        self.proxy_url = (proxy_url or url).rstrip("/")
        self.retries = retries
        self._http_settings: dict[str, Any] = {
            "base_url": self.url,
            "headers": headers(check_token(admin_token)),
            "timeout": timeout,
        }

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.url!r}, proxy_url={self.proxy_url!r})"


def export_cut(exc: httpx.TransportError) -> KeybrakeConnectionError:
    """The error of an audit export the server cut mid-way (a transport error while streaming)."""
    return KeybrakeConnectionError(f"audit export cut: {type(exc).__name__}: {exc}")
