"""Property: whatever reservations, refusals, failures and settlements share a group commit, the
counters end equal to a reference model that applies the calls one by one in queue order (the
sum of the committed ones), and every call's answer is the model's."""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake.core.errors import EnforcementUnavailable
from keybrake.store import open_store
from keybrake.store.base import ReservedItem, ReserveResult, Settlement
from keybrake.store.records import AuditRow
from keybrake.store.sqlite import SQLiteStore
from tests.store.contract import DAY0, Clock, caps, key, row
from tests.store.test_sqlite_group import _queued

pytestmark = pytest.mark.sqlite_only
LIMIT = 10_000_000  # the key's daily cap (µUSD)

# One call: ("reserve", amount) | ("settle", which open reservation, share of it spent in %)
# | ("fail", amount): a call that writes to the counter, then raises (rolled back to its savepoint).
OP = st.one_of(
    st.tuples(st.just("reserve"), st.integers(1, 6).map(lambda n: n * 1_000_000)),
    st.tuples(st.just("settle"), st.integers(0, 50), st.integers(0, 100)),
    st.tuples(st.just("fail"), st.integers(1, 5_000_000)),
)


@dataclass
class Model:
    used: int = 0
    reserved: int = 0
    open: list[tuple[AuditRow, list[ReservedItem], int]] = field(default_factory=list)  # row, items, amount


def _fail_call(store: SQLiteStore, amount: int) -> Any:
    def run() -> None:
        with store._tx() as cur:
            cur.execute("UPDATE counters SET reserved = reserved + ? WHERE scope = 'key:vk_1'", (amount,))
            raise ValueError("refused after writing")

    return store._run(run)


async def _scenario(data: Path, groups: list[list[tuple[Any, ...]]]) -> None:
    store = open_store(None, data, migrate=False, clock=Clock(DAY0 + 3_600_000))
    assert isinstance(store, SQLiteStore)
    m = Model()
    try:
        await store.insert_key(key(store), "h1")
        for group in groups:
            calls: list[Any] = []
            expect: list[tuple[str, Any]] = []
            settled: set[int] = set()
            for op in group:
                if op[0] == "reserve":
                    r = row(store)
                    calls.append(store.reserve("vk_1", 1, caps("vk_1", op[1], LIMIT), r, "me"))
                    fits = m.used + m.reserved + op[1] <= LIMIT
                    if fits:
                        m.reserved += op[1]
                    expect.append(("reserve", (fits, r, op[1])))
                elif op[0] == "settle" and m.open:
                    i = op[1] % len(m.open)
                    if i in settled:
                        continue
                    settled.add(i)
                    r, items, amount = m.open[i]
                    actual = amount * op[2] // 100
                    r.verdict = "allowed"
                    s = Settlement("allowed", actual, "response", "charge", False, True)
                    calls.append(store.settle(r, items, s, "daily_usd"))
                    m.used, m.reserved = m.used + actual, m.reserved - amount
                    expect.append(("settle", None))
                elif op[0] == "fail":
                    calls.append(_fail_call(store, op[1]))
                    expect.append(("fail", None))
            m.open = [o for j, o in enumerate(m.open) if j not in settled]
            got = await _queued(store, calls)
            for (kind, want), answer in zip(expect, got, strict=True):
                if kind == "reserve":
                    fits, r, amount = want
                    assert isinstance(answer, ReserveResult) and (answer.cap_hit is None) == fits
                    if fits:
                        m.open.append((r, answer.items, amount))
                elif kind == "settle":
                    assert answer is None
                else:
                    assert isinstance(answer, ValueError) and not isinstance(answer, EnforcementUnavailable)
            c = await store.counters_for("key:vk_1", [("daily_usd", DAY0)])
            got_counter = (c["daily_usd"].used, c["daily_usd"].reserved) if "daily_usd" in c else (0, 0)
            assert got_counter == (m.used, m.reserved)
    finally:
        await store.close()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(groups=st.lists(st.lists(OP, min_size=1, max_size=8), min_size=1, max_size=5))
def test_group_commits_end_equal_to_the_reference_model(groups: list[list[tuple[Any, ...]]]) -> None:
    data = Path(tempfile.mkdtemp(prefix="kb-group-"))
    try:
        asyncio.run(_scenario(data, groups))
    finally:
        shutil.rmtree(data, ignore_errors=True)
