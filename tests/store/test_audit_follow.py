"""`keybrake audit tail -f`'s follower (cli/audit_follow.py) against a real store, on every engine.

Rows are minted (id and `ts`) at one time and committed later, in any order, as concurrent
requests commit; the follower polls in between. Whatever the interleaving, every row committed
after the tail started is printed exactly once — a row committed late (an older id than rows
already printed) included, as long as it commits within the follower's overlap of its id's
time — and no row committed before the tail started is printed as new.
"""

from __future__ import annotations

import asyncio
import itertools
import weakref
from collections.abc import Callable
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake.cli.audit_follow import OVERLAP_MS, Follower
from keybrake.store.base import AuditRow, Store
from keybrake.store.ids import new_audit_id
from tests.harness import examples
from tests.store.contract import DAY0, Clock

POLL_MS = 1_000  # the longest the simulated tail waits between polls
HOUR = 3_600_000


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    """Rows as (minted at, committed at) ms offsets, the tail's start and its poll times."""
    n = draw(st.integers(1, 25))
    minted = sorted(draw(st.lists(st.integers(0, 20_000), min_size=n, max_size=n)))
    # A write commits within the overlap, less the longest wait for the next poll.
    lags = draw(st.lists(st.integers(0, OVERLAP_MS - POLL_MS), min_size=n, max_size=n))
    rows = list(zip(minted, [m + lag for m, lag in zip(minted, lags, strict=True)], strict=True))
    end = max(c for _, c in rows)
    start = draw(st.integers(0, end))
    steps = draw(st.lists(st.integers(1, POLL_MS), min_size=1, max_size=60))
    polls = [t for t in itertools.accumulate(steps, initial=start) if start < t <= end]
    while not polls or polls[-1] < end:  # keep polling (every POLL_MS) until every row committed
        polls.append((polls[-1] if polls else start) + POLL_MS)
    return {"rows": rows, "start": start, "polls": polls}


_bases = itertools.count(1)
_stores: weakref.WeakKeyDictionary[Callable[..., Store], Store] = weakref.WeakKeyDictionary()


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=histories())
def test_every_row_committed_after_the_start_is_printed_once(
    open_engine: Callable[..., Store], h: dict[str, Any]
) -> None:
    if open_engine not in _stores:
        _stores[open_engine] = open_engine(Clock(DAY0))
    store = _stores[open_engine]
    base = DAY0 + next(_bases) * HOUR  # each example an hour after the last: earlier rows lie behind it
    rows = [
        (AuditRow(id=new_audit_id(base + m), ts=base + m, method="POST", path="/v1/x", verdict="allowed"), c)
        for m, c in h["rows"]
    ]
    printed: list[str] = []

    def emit(row: dict[str, Any], update: bool) -> None:
        assert not update  # no row here is ever in flight
        printed.append(row["id"])

    async def go() -> None:
        pending = sorted(rows, key=lambda rc: rc[1])
        follower = Follower(store, emit)

        async def commit_until(t: int) -> None:
            while pending and pending[0][1] <= t:
                await store.insert_audit(pending.pop(0)[0])

        await commit_until(h["start"])
        before = {r.id for r, c in rows if c <= h["start"]}
        await follower.start(0)
        for t in h["polls"]:
            await commit_until(t)
            await follower.poll()
        assert not pending
        assert len(printed) == len(set(printed)), "a row printed twice"
        assert not before & set(printed), "a row from before the tail printed as new"
        assert set(printed) == {r.id for r, _ in rows} - before, "a row never printed"

    asyncio.run(go())
