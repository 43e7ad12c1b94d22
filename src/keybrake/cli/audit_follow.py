"""`keybrake audit tail --follow`: print each audit row once as it arrives, and once more when a
row printed `in_flight` completes (marked as an update).

Audit ids are ULIDs minted from the row's `ts`, and the proxy mints them right before the row's
first write (after the key, policy and any pre-flight lookup were checked: proxy/record.py,
`RequestContext.stamp`), so id order is the order rows are first written, up to the time a write
takes to commit and, across replicas, the drift of their clocks (milliseconds). A row is written
`in_flight` before its request is forwarded, and completed in place later.

Following therefore reads by id: every poll reads the rows after the newest id printed, and
checks the overlap before it (`overlap_ms`) for rows that were minted earlier but committed later
(concurrent writes): a count of that window's ids, against the ids already printed there, and only
when they differ, the window itself, skipping the ids already printed. A poll thus reads the new
rows, one count, and the in-flight rows it re-checks (at most PENDING_READS), whatever the request
rate. A row printed while `in_flight` is read again by its id until it completes. Rows that
existed before the tail started are never printed as new.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from keybrake.config import Settings
from keybrake.store.base import AuditQuery
from keybrake.store.ids import audit_id_floor

# How late a row may commit after a newer one and still be printed (ms): more than a reservation
# may wait for the store (KEYBRAKE_RESERVE_DEADLINE_MS, 2 s by default) plus clock drift.
OVERLAP_MS = 5_000
DRIFT_MS = 3_000  # beyond a reservation's deadline: commit time and the replicas' clock drift


def overlap_ms(settings: Settings) -> int:
    """The overlap (ms) a tail re-checks for `settings`: OVERLAP_MS, or more when a reservation may
    wait longer for the store (KEYBRAKE_RESERVE_DEADLINE_MS plus DRIFT_MS)."""
    return max(OVERLAP_MS, settings.reserve_deadline_ms + DRIFT_MS)


PAGE = 500  # rows per read while catching up
PENDING_READS = 200  # in-flight rows re-read per poll (oldest first)

Emit = Callable[[dict[str, Any], bool], None]  # (stored row, is_update)


class Follower:
    """The follow loop's state: what was printed, and which printed rows are still in flight.

    `emit(row, update)` prints one stored row (`update` True: a row printed earlier, now
    complete). `store` is the audit store (`query_audit`, `get_audit`); `overlap_ms`: how late (ms)
    a row may commit after its `ts` and still be printed (`overlap_ms(settings)`).
    """

    def __init__(self, store: Any, emit: Emit, *, overlap_ms: int = OVERLAP_MS) -> None:
        self.store = store
        self.emit = emit
        self.overlap = overlap_ms
        self.boundary = ""  # rows with an id <= this are never read (before the tail's first window)
        self.newest_ts: int | None = None
        self.newest_id = ""  # the largest id printed
        self.seen: dict[str, int] = {}  # printed ids in the overlap window → ts (ms)
        self.pending: dict[str, int] = {}  # printed while in_flight → ts (ms)

    async def start(self, count: int) -> None:
        """Print the latest `count` rows (oldest first) and remember where the log ended: the rows
        of the overlap window before it are known (never printed as new), so a row committed
        after the tail started is printed even when its id is older than the newest one then."""
        latest = await self.store.query_audit(AuditQuery(limit=max(count, 1)))
        if latest:
            self.newest_ts, self.newest_id = latest[0]["ts"], latest[0]["id"]
            self.boundary = after = audit_id_floor(latest[0]["ts"] - self.overlap)
            while True:
                q = AuditQuery(after_id=after, through_id=self.newest_id, ascending=True, limit=PAGE)
                rows = await self.store.query_audit(q)
                self.seen.update((r["id"], r["ts"]) for r in rows)
                if len(rows) < PAGE:
                    break
                after = rows[-1]["id"]
        for row in reversed(latest[:count]):
            self._show(row)

    async def poll(self) -> None:
        """Print the rows that arrived since the last poll, then the in-flight rows that completed."""
        floor = audit_id_floor(self.newest_ts - self.overlap) if self.newest_ts is not None else ""
        after = max(floor, self.boundary)
        if self.newest_id > after:
            printed = sum(1 for i in self.seen if after < i <= self.newest_id)
            if await self.store.count_audit_between(after, self.newest_id) == printed:
                after = self.newest_id  # nothing committed late in the overlap: only new rows
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
        if self.newest_ts is not None:  # forget what lies below the next poll's window (by id, as it reads)
            keep = audit_id_floor(self.newest_ts - self.overlap)
            self.seen = {i: ts for i, ts in self.seen.items() if i > keep or i in self.pending}

    async def follow(self, interval_s: float) -> None:
        """Poll every `interval_s` seconds until cancelled (Ctrl-C)."""
        while True:
            await asyncio.sleep(interval_s)
            await self.poll()

    def _show(self, row: dict[str, Any]) -> None:
        self.seen[row["id"]] = row["ts"]
        self.newest_id = max(self.newest_id, row["id"])
        if self.newest_ts is None or row["ts"] > self.newest_ts:
            self.newest_ts = row["ts"]
        if row["verdict"] == "in_flight":
            self.pending[row["id"]] = row["ts"]
        self.emit(row, False)

    def _complete(self, row: dict[str, Any]) -> None:
        del self.pending[row["id"]]
        self.emit(row, True)
