"""Work in proportion to a large body, off the event loop.

The vendor's one parse (`decide.parse`) walks every value of a body, the placement check decodes
the body it would forward, a dedup fingerprint serialises the parsed body, the credential scrub
reads the vendor's whole answer: CPU in proportion to the body. A legal body can hold a million
small JSON objects (a 29 MB Resend send with a million tags took 7–9 s of CPU) or millions of
percent escapes; done on the event loop, one agent's such request stalled every other key's
requests for that long (red team, 2026-12-02). So for a body larger than `LARGE_BODY_BYTES`
that work runs on a worker thread of its own (`keybrake-body`), one body at a time: the event
loop keeps answering while it runs (the two share the GIL, so other requests slow down, never
stop). Bodies up to that size — nearly every call — are handled in place.

Time waiting for that thread counts against the request's reservation deadline
(KEYBRAKE_RESERVE_DEADLINE_MS) like any wait: behind other large bodies, a request is refused
503 `enforcement_unavailable` (audited, retryable) and never forwarded later (its agent may have
given up and retried — second red team: a body queued 22 s was sent after its client had timed
out). The work itself does not count (the deadline is moved by it): it is the request's own
size, not a wait. What one body can cost at all is bounded by core/body_values.py.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar

from keybrake import deadline
from keybrake.core.errors import Denial
from keybrake.core.request import ProxyRequest
from keybrake.proxy import decide
from keybrake.proxy.echoes import check_vault_key_placement

# Bodies up to this size are handled on the event loop (a few ms at most); larger ones on the thread.
LARGE_BODY_BYTES = 64 * 1024
_BODIES = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keybrake-body")
QUEUED_TOO_LONG = (
    "Its reservation deadline (KEYBRAKE_RESERVE_DEADLINE_MS) passed while its body waited behind other "
    "large bodies to be checked; nothing was forwarded. Retry shortly."
)
T = TypeVar("T")


@dataclass(frozen=True)
class Prepared:
    """`parsed`: the vendor's parse or its refusal; `placement`: the refusal of a request that
    carries its own vault key in what would be forwarded (checked only when it parsed)."""

    parsed: decide.Parsed | decide.Refusal
    placement: Denial | None


def _prepare(req: ProxyRequest, token: str, where: decide.Route, max_body_bytes: int | None, pepper: bytes) -> Prepared:
    parsed = decide.parse(req, where, max_body_bytes, pepper)
    if isinstance(parsed, decide.Refusal):
        return Prepared(parsed, None)
    try:
        check_vault_key_placement(token, req, where.vendor, where.vendor.upstream_body(parsed.vreq, req.body))
    except Denial as denial:
        return Prepared(parsed, denial)
    return Prepared(parsed, None)


async def _on_thread(fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` run on the body thread; the time it ran there moves the current request's
    deadline. Raises Denial `enforcement_unavailable` (503, retryable), without running `fn`, when
    that deadline passed while it waited for the thread (or its caller went away meanwhile);
    `fn`'s own exceptions as raised."""
    d, gone = deadline.current(), threading.Event()
    at = d.at if d is not None else None

    def run() -> tuple[T | None, float]:
        if gone.is_set() or (at is not None and time.monotonic() >= at):
            return None, -1.0  # waited past its deadline: nobody will forward it, so nothing to do
        started = time.monotonic()
        return fn(*args), time.monotonic() - started

    try:
        result, took = await asyncio.get_running_loop().run_in_executor(_BODIES, run)
    except asyncio.CancelledError:
        gone.set()  # the request is over (its client hung up): a queued run is skipped
        raise
    if took < 0:  # a refusal of this request, not of the store: audited, no store alert
        raise Denial("enforcement_unavailable", QUEUED_TOO_LONG)
    if d is not None:
        d.extend(took)  # the request's own work is not a wait
    return result  # type: ignore[return-value]  # took >= 0: fn ran and returned a T


async def off_loop(size: int, fn: Callable[..., T], *args: Any) -> T:
    """`fn(*args)` — pure work in proportion to a body of `size` bytes (its parse, a plan's dedup
    fingerprint, a vendor answer's scrub, an MCP call's arguments) — on the event loop for a body
    of at most LARGE_BODY_BYTES, else on the body thread as `_on_thread` (Denial past the
    deadline); `fn`'s exceptions as raised."""
    if size <= LARGE_BODY_BYTES:
        return fn(*args)
    return await _on_thread(fn, *args)


async def prepare(
    req: ProxyRequest, token: str, where: decide.Route, max_body_bytes: int | None, pepper: bytes
) -> Prepared:
    """`decide.parse(req, where, max_body_bytes, pepper)` and, when it parsed, the vault key
    `token`'s placement check on the body as it would be forwarded (`echoes.check_vault_key_placement`),
    as `off_loop` places them by the body's size (Denial past the deadline)."""
    return await off_loop(len(req.body), _prepare, req, token, where, max_body_bytes, pepper)
