"""Red team: `audit tail -f` against a server whose reservation deadline is longer than the tail's
overlap.

A row's id and `ts` are minted right before its reservation, which may wait for the store up to
KEYBRAKE_RESERVE_DEADLINE_MS (any value from 50 ms up). The tail re-checks a fixed 5 s overlap, so
with a deadline of, say, 10 s an allowed (forwarded, charged) request whose reservation commits
8 s after its `ts` — behind an agent's flood of requests holding the store — is never printed by a
running tail, though docs/cli.md promises every row but a late refusal.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import pytest

from keybrake.cli.audit_follow import Follower, overlap_ms
from keybrake.config import from_env
from keybrake.store.ids import new_audit_id
from keybrake.store.open import open_store
from keybrake.store.records import AuditRow

pytestmark = pytest.mark.sqlite_only


@pytest.mark.parametrize("deadline_ms", [2_000, 10_000, 60_000])
def test_a_reservation_committed_just_inside_its_deadline_is_printed(tmp_path: Path, deadline_ms: int) -> None:
    settings = from_env({"KEYBRAKE_RESERVE_DEADLINE_MS": str(deadline_ms)})

    async def go() -> list[tuple[str, bool]]:
        store = open_store(None, tmp_path, migrate=False, create=True)
        printed: list[tuple[str, bool]] = []

        def emit(row: dict[str, Any], update: bool) -> None:
            printed.append((row["id"], update))

        try:
            f = Follower(store, emit, overlap_ms=overlap_ms(settings))
            await f.start(0)
            now = int(time.time() * 1000)
            newer = AuditRow(id=new_audit_id(now), ts=now, method="GET", path="/stripe/v1/x", verdict="denied")
            await store.insert_audit(newer)
            await f.poll()
            ts = now - (deadline_ms - 100)  # minted, then waited for the store almost its whole deadline
            late = AuditRow(id=new_audit_id(ts), ts=ts, method="POST", path="/stripe/v1/refunds", verdict="allowed")
            await store.insert_audit(late)
            await f.poll()
            assert printed == [(newer.id, False), (late.id, False)], printed
            return printed
        finally:
            await store.close()

    asyncio.run(go())
