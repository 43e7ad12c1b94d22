"""A large body's parse and checks, off the event loop.

The vendor's one parse (`decide.parse`) walks every value of a body, and the vault-key placement
check decodes the body it would forward: CPU in proportion to the body. A legal body can hold a
million small JSON objects (a 29 MB Resend send with a million tags took 7–9 s of CPU) or
millions of percent escapes; done on the event loop, one agent's such request stalled every
other key's requests for that long (red team, 2026-12-02). So a body larger than
`LARGE_BODY_BYTES` is parsed and checked on a worker thread of its own (`keybrake-body`), one
body at a time: the event loop keeps answering while it runs (the two share the GIL, so other
requests slow down, never stop), and large bodies queue behind each other, not in front of small
ones. The time a large body spends there moves its request's deadline
(KEYBRAKE_RESERVE_DEADLINE_MS bounds waiting on the store, not reading the request).
"""

from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from keybrake import deadline
from keybrake.core.errors import Denial
from keybrake.core.request import ProxyRequest
from keybrake.proxy import decide
from keybrake.proxy.echoes import check_vault_key_placement

# Bodies up to this size are parsed on the event loop (a few ms at most); larger ones on the thread.
LARGE_BODY_BYTES = 64 * 1024
_BODIES = ThreadPoolExecutor(max_workers=1, thread_name_prefix="keybrake-body")


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


async def prepare(
    req: ProxyRequest, token: str, where: decide.Route, max_body_bytes: int | None, pepper: bytes
) -> Prepared:
    """`decide.parse(req, where, max_body_bytes, pepper)` and, when it parsed, the vault key
    `token`'s placement check on the body as it would be forwarded (`echoes.check_vault_key_placement`).
    On the event loop for a body of at most LARGE_BODY_BYTES, else on the body thread, the
    request's deadline moved by the time it took there. Raises nothing of its own."""
    if len(req.body) <= LARGE_BODY_BYTES:
        return _prepare(req, token, where, max_body_bytes, pepper)
    started = time.monotonic()
    try:
        return await asyncio.get_running_loop().run_in_executor(
            _BODIES, _prepare, req, token, where, max_body_bytes, pepper
        )
    finally:
        d = deadline.current()
        if d is not None:
            d.extend(time.monotonic() - started)
