"""A settlement batch moves each counter ONCE (the sum of its jobs' moves, `sql_settle._move_all`):
generated batches settled together must leave exactly what the same jobs settled one at a time,
in order, leave — every counter, and each settled row's `cap_usage_after_usd` (the counter after
its own move, not after the batch's). A row that keeps its reservation moves nothing: it reads the
counter once the batch's moves are done (as it always did), so its reading is not compared."""

from __future__ import annotations

import asyncio
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake.store.base import SettleJob, Settlement, Store
from keybrake.store.open import open_store
from tests.harness import examples
from tests.store.contract import DAY0, Clock, caps, key, row

JOBS = st.lists(
    st.fixed_dictionaries(
        {
            "reserved": st.integers(0, 2_000),
            "cost": st.integers(0, 3_000),
            "verdict": st.sampled_from(["allowed", "upstream_error", "outcome_unknown"]),
            "keep": st.booleans(),
            "forwarded": st.booleans(),
            "daily": st.sampled_from(["daily_usd", "total_usd", "hourly_requests", None]),
        }
    ),
    min_size=1,
    max_size=6,
)


async def _settled(tmp: Path, jobs: list[dict[str, Any]], *, together: bool) -> dict[str, Any]:
    store: Store = open_store(None, tmp, migrate=False, clock=Clock(DAY0 + 3_600_000))
    try:
        await store.insert_key(key(store), "h1")
        await store.reserve("vk_1", 1, caps("vk_1", 700, None), row(store), "me")  # a row the batch leaves alone
        settle = []
        for j in jobs:
            r = row(store)
            r.reserved_usd = j["reserved"]
            res = await store.reserve("vk_1", 1, caps("vk_1", j["reserved"], None), r, "me")
            s = Settlement(j["verdict"], j["cost"], "response", "charge", j["keep"], forwarded=j["forwarded"])
            settle.append(SettleJob(r, res.items, s, j["daily"]))
        if together:
            await store.settle_many(settle)
        else:
            for job in settle:
                await store.settle_many([job])
        got = await store.counters_for("key:vk_1", [("daily_usd", DAY0), ("total_usd", 0), ("hourly_requests", DAY0)])
        rows = [await store.get_audit(job.row.id) for job in settle]
        return {
            "counters": {name: (c.used, c.reserved) for name, c in got.items()},
            "rows": [
                (r["verdict"], r["cost_usd"], None if j["keep"] else r["cap_usage_after_usd"]) if r else None
                for r, j in zip(rows, jobs, strict=True)
            ],
        }
    finally:
        await store.close()


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(jobs=JOBS)
def test_a_batch_moves_counters_as_its_jobs_one_at_a_time(jobs: list[dict[str, Any]]) -> None:
    with tempfile.TemporaryDirectory() as a, tempfile.TemporaryDirectory() as b:
        together = asyncio.run(_settled(Path(a), jobs, together=True))
        alone = asyncio.run(_settled(Path(b), jobs, together=False))
    assert together == alone


def test_each_row_reads_its_daily_counter_after_its_own_move(tmp_path: Path) -> None:
    """Three charges of one key settled in one batch: $1, $2, $3 → the daily counter read
    after each is $1, $3, $6 (the batch wrote the counter once, with $6)."""
    jobs = [
        {"reserved": 5_000_000, "cost": c, "verdict": "allowed", "keep": False, "forwarded": True, "daily": "daily_usd"}
        for c in (1_000_000, 2_000_000, 3_000_000)
    ]
    got = asyncio.run(_settled(tmp_path, jobs, together=True))
    assert [r[2] for r in got["rows"]] == [1_000_000, 3_000_000, 6_000_000]
    assert got["counters"]["daily_usd"] == (6_000_000, 700)
