"""`/readyz`'s probe of the store: cached, shared, bounded (docs/operations.md, "Fail closed").

`/readyz` needs no credential and is served on the proxy listener too, so a flood of it must not
become a flood of store calls: at most one probe runs at a time, and its answer is reused for
PROBE_EVERY_S. A probe is a store call in the capped `lookup` class (store/gate.py) with its own
deadline; every answer comes within READYZ_DEADLINE_S, ready or not.
"""

from __future__ import annotations

import asyncio
import time

from keybrake import deadline
from keybrake.core.errors import EnforcementUnavailable
from keybrake.logs import redact
from keybrake.store.base import Probes

READYZ_DEADLINE_S = 1.0  # /readyz answers within this, ready or not
PROBE_EVERY_S = 0.25  # a probe's answer is reused this long (s): at most 4 store probes a second
PROBE_DEADLINE_S = 0.8  # the probe's own store deadline: its reason arrives before READYZ_DEADLINE_S


class ReadyProbe:
    def __init__(self, store: Probes) -> None:
        self.store = store
        self._answer: tuple[bool, str | None] | None = None  # (ready, reason if not)
        self._at = 0.0  # monotonic s of that answer
        self._running: asyncio.Task[tuple[bool, str | None]] | None = None

    async def check(self) -> tuple[bool, str | None]:
        """(True, None) if the store answers, else (False, why) — within READYZ_DEADLINE_S."""
        if self._answer is not None and time.monotonic() - self._at < PROBE_EVERY_S:
            return self._answer
        if self._running is None:
            self._running = asyncio.get_running_loop().create_task(self._probe(), name="keybrake-readyz-probe")
        try:
            return await asyncio.wait_for(asyncio.shield(self._running), READYZ_DEADLINE_S)
        except TimeoutError:
            return False, f"store: no answer within {READYZ_DEADLINE_S:g} s"

    async def _probe(self) -> tuple[bool, str | None]:
        deadline.start(PROBE_DEADLINE_S, kind=deadline.LOOKUP)  # the store call gives up by then
        answer: tuple[bool, str | None]
        try:
            await self.store.ping()
            answer = (True, None)
        except EnforcementUnavailable as exc:
            answer = (False, redact(str(exc))[:300])
        finally:
            self._running = None
        self._answer, self._at = answer, time.monotonic()
        return answer
