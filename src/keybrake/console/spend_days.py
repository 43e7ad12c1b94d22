"""Spend per (vendor, label, UTC day) for the console's Overview and Spend pages, fast on a large
audit log: the days before today are read in one pass and kept for `ttl_s` seconds; today is
read on every page view (a pass over today's rows only).

Closed days change rarely (a reconciliation, a late settlement): a kept copy older than `ttl_s`
is still shown while one task reads the range again, so a page never waits for that pass except
the first time a range is asked for. docs/console.md (speed) says so.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from keybrake.admin.spend import report
from keybrake.core.timefmt import DAY_MS, utc_day_start
from keybrake.logs import event
from keybrake.runtime import Runtime
from keybrake.store.base import SPEND_BUCKET_MS, SpendRow

TTL_S = 300.0
log = logging.getLogger("keybrake.console")

# (vendor, label, UTC day start ms, charged µUSD, refunded µUSD, requests, denied, cap hits)
Cell = tuple[str, str | None, int, int, int, int, int, int]


@dataclass
class _Kept:
    since: int  # the first closed day kept (Unix ms, UTC midnight)
    until: int  # today's start when read: days in [since, until) are kept
    cells: list[Cell]
    read_at: float  # monotonic seconds


class SpendDays:
    """The spend cells of one process (one per admin app). `clock` is monotonic seconds."""

    def __init__(self, ttl_s: float = TTL_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s, self._clock = ttl_s, clock
        self._kept: _Kept | None = None
        self._refresh: asyncio.Task[_Kept] | None = None
        self._lock = asyncio.Lock()

    async def cells(self, rt: Runtime, since: int) -> list[Cell]:
        """Every cell from the UTC day holding `since` (Unix ms) until now. Raises
        EnforcementUnavailable when the store cannot answer."""
        now = rt.audit_store.now_ms()
        today, first = utc_day_start(now), utc_day_start(since)
        closed = await self._closed(rt, first, today) if first < today else []
        live = await rt.audit_store.spend_days(max(first, today), now + 1)
        return closed + live

    async def _closed(self, rt: Runtime, first: int, today: int) -> list[Cell]:
        kept = self._kept
        if kept is None or kept.since > first or kept.until != today:
            async with self._lock:  # one pass at a time: concurrent first views share it
                kept = self._kept
                if kept is None or kept.since > first or kept.until != today:
                    kept = await self._read(rt, min(first, kept.since) if kept else first, today)
        elif self._clock() - kept.read_at > self.ttl_s and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.create_task(self._read(rt, kept.since, today))  # shown stale meanwhile
            self._refresh.add_done_callback(_failed_quietly)
        return [c for c in kept.cells if c[2] >= first]

    async def _read(self, rt: Runtime, since: int, until: int) -> _Kept:
        kept = _Kept(since, until, await rt.audit_store.spend_days(since, until), self._clock())
        self._kept = kept
        return kept


def _failed_quietly(task: asyncio.Task[_Kept]) -> None:
    """A background read that failed (the store down) is logged; the next view tries again."""
    if not task.cancelled() and (exc := task.exception()) is not None:
        event(log, "console spend read failed", logging.WARNING, error=str(exc)[:300])


def by_vendor(cells: Iterable[Cell], since: int = 0) -> dict[str, Any]:
    """GET /v1/spend's report grouped by vendor, of the cells from `since` (Unix ms)."""
    return report(_rows(cells, since, lambda c: c[0]), "vendor", "UTC")


def by_day(cells: Iterable[Cell], vendor: str) -> dict[str, Any]:
    """GET /v1/spend's report grouped by UTC day, of one vendor's cells."""
    rows = _rows((c for c in cells if c[0] == vendor), 0, lambda c: c[2] // SPEND_BUCKET_MS)
    return report(rows, "day", "UTC")


def by_label(cells: Iterable[Cell], segments: int) -> dict[str, Any]:
    """GET /v1/spend's report grouped by the first `segments` label segments."""
    return report(_rows(cells, 0, lambda c: c[1]), f"label:{segments}", "UTC")


def _rows(cells: Iterable[Cell], since: int, group: Callable[[Cell], str | int | None]) -> list[SpendRow]:
    out: dict[str | int | None, list[int]] = {}
    for c in cells:
        if c[2] < since:
            continue
        acc = out.setdefault(group(c), [0, 0, 0, 0, 0])
        for i, v in enumerate(c[3:]):
            acc[i] += v
    return [SpendRow(g, *v) for g, v in out.items()]


__all__ = ["DAY_MS", "Cell", "SpendDays", "by_day", "by_label", "by_vendor"]
