"""Retries settling an earlier `outcome_unknown` request (red team F2): every retry's job carries the
earlier settlement, the store settles the earlier row once and says which job did it
(`SettleJob.earlier_settled`); `keybrake_settled_usd_total` books what the store booked, exactly."""

from __future__ import annotations

import asyncio
import copy
import itertools
import weakref
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from keybrake.proxy.metrics import ProxyMetrics
from keybrake.store.base import EarlierSettlement, SettleJob, Settlement, Store
from tests.harness import examples
from tests.store.contract import DAY0, Clock, caps, key, row

KEPT = Settlement("outcome_unknown", 0, "estimate", "charge", True, forwarded=True)
RETRY = Settlement("allowed", 0, "response", "charge", False, forwarded=True)  # a retry reserves and costs 0


def _metric(metrics: ProxyMetrics) -> int:
    """`keybrake_settled_usd_total{vendor="stripe"}` in µUSD."""
    return round(float(metrics.settled_usd.labels("stripe")._value.get()) * 1_000_000)


async def _reserve(store: Store, key_id: str, amount: int) -> tuple[Any, list[Any]]:
    r = replace(row(store), key_id=key_id, vendor="stripe", reserved_usd=amount)
    res = await store.reserve(key_id, 1, caps(key_id, amount, None), r, "me")
    return r, res.items


async def _used(store: Store, key_id: str) -> int:
    return (await store.counters_for(f"key:{key_id}", [("daily_usd", DAY0)]))["daily_usd"].used


async def test_five_retries_settle_the_unknown_outcome_once_and_say_which(open_engine: Callable[..., Store]) -> None:
    store = open_engine(Clock(DAY0 + 3_600_000))
    await store.insert_key(key(store), "h1")
    first, items = await _reserve(store, "vk_1", 1_000_000)
    await store.settle_many([SettleJob(first, items, KEPT, "daily_usd")])
    kept = await store.get_audit(first.id)
    assert kept is not None and kept["cap_usage_after_usd"] == 0  # its cost not known yet
    earlier = EarlierSettlement(first.id, 1_000_000, "response", "charge")
    jobs = []
    for _ in range(5):
        r, its = await _reserve(store, "vk_1", 0)
        jobs.append(SettleJob(r, its, RETRY, "daily_usd", settles_earlier=earlier))
    metrics = ProxyMetrics(CollectorRegistry())
    await store.settle_many(jobs[:2])  # two batches, as the settle writer may make them
    await store.settle_many(jobs[2:])
    for job in jobs:
        metrics.settled_job(job)
    assert [j.earlier_settled for j in jobs] == [True, False, False, False, False]
    assert await _used(store, "vk_1") == 1_000_000
    assert _metric(metrics) == 1_000_000  # it was 5_000_000
    # the earlier row reports the key's usage after its own settlement (with its reservation
    # kept it reported $0 used), and so does the retry that settled it
    settled = await store.get_audit(first.id)
    assert settled is not None and settled["settled_by"] == jobs[0].row.id
    assert settled["cap_usage_after_usd"] == 1_000_000
    again = copy.deepcopy(jobs)  # the first batch again, as after a COMMIT whose answer was lost
    await store.settle_many(again)
    assert [j.earlier_settled for j in again] == [True, False, False, False, False]  # still this job's
    assert await _used(store, "vk_1") == 1_000_000


# -- the generator ----------------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn) -> dict[str, Any]:
    """Some earlier requests left outcome_unknown, retries of them (each carrying the earlier
    settlement), plain requests; the jobs in some order, cut into batches, some of them written
    twice (the first COMMIT landed, its answer lost: only the second run is counted)."""
    earlier = draw(st.lists(st.tuples(st.integers(0, 3_000_000), st.integers(0, 3_000_000)), min_size=1, max_size=3))
    jobs = draw(
        st.lists(
            st.one_of(
                st.tuples(st.just("retry"), st.integers(0, len(earlier) - 1)),
                st.tuples(st.just("plain"), st.integers(0, 2_000_000)),
            ),
            min_size=1,
            max_size=10,
        )
    )
    order = draw(st.permutations(range(len(jobs))))
    cuts = sorted(draw(st.sets(st.integers(1, max(1, len(jobs) - 1)), max_size=4)))
    bounds = [0, *[c for c in cuts if c < len(jobs)], len(jobs)]
    batches = [list(order[a:b]) for a, b in itertools.pairwise(bounds) if a < b]
    lost = [draw(st.booleans()) for _ in batches]
    return {"earlier": earlier, "jobs": jobs, "batches": batches, "lost": lost}


_runs = iter(range(10**9))
_stores: weakref.WeakKeyDictionary[Callable[..., Store], Store] = weakref.WeakKeyDictionary()


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(h=histories())
def test_the_settled_metric_books_what_the_store_booked(open_engine: Callable[..., Store], h: dict[str, Any]) -> None:
    """Whatever the interleaving of retries, batches and re-run batches, the settled-USD metric
    (counted as the settle writer counts: once per job, after its committed run) equals the USD
    the store booked (the key's daily counter), and each earlier row is booked by one job."""
    if open_engine not in _stores:
        _stores[open_engine] = open_engine(Clock(DAY0 + 3_600_000))
    store = _stores[open_engine]
    key_id = f"vk_s{next(_runs)}"

    async def go() -> None:
        await store.insert_key(replace(key(store), id=key_id), f"h_{key_id}")
        earlier = []
        for reserved, cost in h["earlier"]:
            r, items = await _reserve(store, key_id, reserved)
            await store.settle_many([SettleJob(r, items, KEPT, "daily_usd")])
            earlier.append(EarlierSettlement(r.id, cost, "response", "charge"))
        jobs = []
        for kind, arg in h["jobs"]:
            if kind == "retry":
                r, items = await _reserve(store, key_id, 0)
                jobs.append(SettleJob(r, items, RETRY, "daily_usd", settles_earlier=earlier[arg]))
            else:
                r, items = await _reserve(store, key_id, arg)
                jobs.append(SettleJob(r, items, replace(RETRY, cost_usd=arg), "daily_usd"))
        metrics = ProxyMetrics(CollectorRegistry())
        for batch, lost in zip(h["batches"], h["lost"], strict=True):
            mine = [jobs[i] for i in batch]
            if lost:
                await store.settle_many(copy.deepcopy(mine))  # committed; its answer never arrived
            await store.settle_many(mine)
            for job in mine:
                metrics.settled_job(job)
        booked = 0
        for e in earlier:
            movers = [j for j in jobs if j.settles_earlier is e and j.earlier_settled]
            got = await store.get_audit(e.id)
            assert got is not None
            settled = got["verdict"] == "allowed"
            assert len(movers) == (1 if settled else 0)
            assert settled == any(j.settles_earlier is e for j in jobs)
            booked += e.cost_usd if settled else 0
        booked += sum(j.settlement.cost_usd for j in jobs if j.settles_earlier is None)
        used = await _used(store, key_id)
        assert used == booked
        assert _metric(metrics) == used
        event(f"{sum(1 for k, _ in h['jobs'] if k == 'retry')} retries, {sum(h['lost'])} batches re-run")

    asyncio.run(go())
