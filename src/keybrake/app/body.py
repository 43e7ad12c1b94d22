"""Proxied request bodies: read whole before forwarding, within a budget for the whole process.

The connection limit (keybrake.listener) bounds how many bodies are held at once; `BodyBudget`
bounds how many bytes (KEYBRAKE_MAX_BUFFERED_BODY_BYTES).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

Receive = Callable[[], Awaitable[dict[str, Any]]]


class BodyBudgetExceeded(Exception):
    """Buffering this body would pass the process's budget for request bodies held at once."""


class BodyBudget:
    """Bytes of proxied request bodies held in memory at once, across every request (bounded).

    Bodies are read whole before forwarding (one parse, then the same bytes sent on); the
    connection limit bounds how many, this bounds how much: past it a request is refused
    (503 `enforcement_unavailable`, retryable), never buffered.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.held = 0

    def take(self, n: int) -> None:
        if self.held + n > self.limit:
            raise BodyBudgetExceeded
        self.held += n

    def give(self, n: int) -> None:
        self.held -= n


async def read_body(
    receive: Receive, limit: int, headers: tuple[tuple[str, str], ...], budget: BodyBudget
) -> tuple[bytes, bool, bool]:
    """Read the whole body, or stop keeping it once it passes `limit` (the rest is drained).

    Returns (body, too_large, gone): `gone` when the client disconnected before the body ended.
    A returned body stays taken from `budget` (the caller gives it back once answered); raises
    BodyBudgetExceeded when holding it would pass the process's body budget.
    """
    declared = next((v for k, v in headers if k == "content-length"), None)
    too_large = declared is not None and declared.isascii() and declared.isdigit() and int(declared) > limit
    chunks: list[bytes] = []
    size = 0
    kept = False
    try:
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return b"", too_large, True
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > limit:
                too_large = True
            if not too_large:
                budget.take(len(chunk))
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        kept = not too_large
        return b"".join(chunks), too_large, False
    finally:
        if not kept:
            budget.give(sum(len(c) for c in chunks))
