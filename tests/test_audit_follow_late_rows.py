"""`keybrake audit tail -f` prints, once, every row that commits after it started within the
follower's overlap of its `ts`, whatever order rows commit in (a reservation waits up to its
deadline for the store; on PostgreSQL each replica mints ids from its own clock)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from keybrake.cli.audit_follow import OVERLAP_MS, Follower
from keybrake.store.ids import new_audit_id
from keybrake.store.open import open_store
from keybrake.store.records import AuditRow

pytestmark = pytest.mark.sqlite_only


def _row(ts: int, verdict: str = "denied") -> AuditRow:
    return AuditRow(id=new_audit_id(ts), ts=ts, method="POST", path="/stripe/v1/charges", verdict=verdict)


# Within the overlap: a reservation waits at most its deadline (2 s) for the store. A row later than
# the overlap is the documented limit (docs/cli.md: only a refusal's row, queued under a flood).
@pytest.mark.parametrize("late_by_ms", [OVERLAP_MS // 2, OVERLAP_MS - 500])
def test_a_row_that_commits_late_is_printed_once(tmp_path: Path, late_by_ms: int) -> None:
    async def go() -> list[tuple[str, bool]]:
        store = open_store(None, tmp_path, migrate=False, create=True)
        printed: list[tuple[str, bool]] = []

        def emit(row: dict[str, Any], update: bool) -> None:
            printed.append((row["id"], update))

        try:
            f = Follower(store, emit)
            await f.start(0)
            now = int(time.time() * 1000)
            newer = _row(now)
            await store.insert_audit(newer)
            await f.poll()
            late = _row(now - late_by_ms)  # started first, committed after `newer` was printed
            await store.insert_audit(late)
            await f.poll()
            await f.poll()
            assert printed == [(newer.id, False), (late.id, False)], printed
            return printed
        finally:
            await store.close()

    asyncio.run(go())
