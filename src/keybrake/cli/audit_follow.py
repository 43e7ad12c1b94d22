"""`keybrake audit tail --follow`: print each audit row once as it arrives, and once more when a
row printed `in_flight` completes (marked as an update).

Audit ids are ULIDs minted from the request's start time, so id order is time order; a row is
written `in_flight` before its request is forwarded, and completed in place later. Following
therefore reads by id: every poll reads the rows after the newest id printed, plus a short
overlap (`OVERLAP_MS`) for rows that started earlier but committed later (concurrent requests),
skipping the ids already printed. A row printed while `in_flight` is read again by its id until
it completes. Rows that existed before the tail started are never printed as new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from keybrake.store.base import AuditQuery
from keybrake.store.ids import audit_id_floor

OVERLAP_MS = 2_000  # how late a row may commit after a newer one and still be printed
PAGE = 500  # rows per read while catching up
PENDING_READS = 200  # in-flight rows re-read per poll (oldest first)

Emit = Callable[[dict[str, Any], bool], None]  # (stored row, is_update)


class Follower:
    """The follow loop's state: what was printed, and which printed rows are still in flight.

    `emit(row, update)` prints one stored row (`update` True: a row printed earlier, now
    complete). `store` is the audit store (`query_audit`, `get_audit`).
    """

    def __init__(self, store: Any, emit: Emit) -> None:
        self.store = store
        self.emit = emit
        self.boundary = ""  # rows with an id <= this existed before the tail: never printed as new
        self.newest_ts: int | None = None
        self.seen: dict[str, int] = {}  # printed ids in the overlap window → ts (ms)
        self.pending: dict[str, int] = {}  # printed while in_flight → ts (ms)

    async def start(self, count: int) -> None:
        """Print the latest `count` rows (oldest first) and remember where the log ended."""
        latest = await self.store.query_audit(AuditQuery(limit=max(count, 1)))
        if latest:
            self.boundary = latest[0]["id"]
            self.newest_ts = latest[0]["ts"]
        for row in reversed(latest[:count]):
            self._show(row)

    async def poll(self) -> None:
        """Print the rows that arrived since the last poll, then the in-flight rows that completed."""
        floor = audit_id_floor(self.newest_ts - OVERLAP_MS) if self.newest_ts is not None else ""
        after = max(floor, self.boundary)
        while True:
            rows = await self.store.query_audit(AuditQuery(after_id=after, ascending=True, limit=PAGE))
            for row in rows:
                if row["id"] in self.seen:
                    if row["id"] in self.pending and row["verdict"] != "in_flight":
                        self._complete(row)
                else:
                    self._show(row)
            if len(rows) < PAGE:
                break
            after = rows[-1]["id"]
        for row_id in sorted(self.pending)[:PENDING_READS]:
            row = await self.store.get_audit(row_id)
            if row is None:  # purged meanwhile
                del self.pending[row_id]
            elif row["verdict"] != "in_flight":
                self._complete(row)
        if self.newest_ts is not None:
            keep = self.newest_ts - OVERLAP_MS
            self.seen = {i: ts for i, ts in self.seen.items() if ts >= keep or i in self.pending}

    async def follow(self, interval_s: float) -> None:
        """Poll every `interval_s` seconds until cancelled (Ctrl-C)."""
        while True:
            await asyncio.sleep(interval_s)
            await self.poll()

    def _show(self, row: dict[str, Any]) -> None:
        self.seen[row["id"]] = row["ts"]
        if self.newest_ts is None or row["ts"] > self.newest_ts:
            self.newest_ts = row["ts"]
        if row["verdict"] == "in_flight":
            self.pending[row["id"]] = row["ts"]
        self.emit(row, False)

    def _complete(self, row: dict[str, Any]) -> None:
        del self.pending[row["id"]]
        self.emit(row, True)
