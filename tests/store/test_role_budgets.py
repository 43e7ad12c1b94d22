"""The budgets role (`BudgetStore`, the admin surface's) and its books (issue 12, kind 1): a
budget's counters equal what its keys spent in the current windows, whatever changed while
traffic flowed — creates, time-zone and cap changes, key relabels that move a key into or out
of `label_prefix` budgets, requests in flight across them. Every test runs on SQLite and on
PostgreSQL (conftest.py). Here: time-zone changes, deletes and the generator over every kind
of change; tests/store/test_role_budgets_seeding.py and test_role_budgets_relabel.py the rest.

The reference model reads the audit rows back and sums, in Python, the rows each budget covers
in each of its current windows: settled rows count their `cost_usd` (µUSD), rows still holding a
reservation count their `reserved_usd`; the counter must hold exactly that (`used + reserved`).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import weakref
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from keybrake.core.timefmt import DAY_MS
from keybrake.core.windows import Window, window_start
from keybrake.store.base import (
    AuditRow,
    BudgetRecord,
    BudgetStore,
    ReservedItem,
    Store,
)
from tests.harness import examples
from tests.store.budget_books import (
    T0,
    USD,
    ZONES,
    budget_record,
    charge,
    check_books,
    hold,
    key_record,
    relabel,
    settle_held,
)
from tests.store.contract import Clock

# -- the examples -------------------------------------------------------------------


async def test_going_back_to_a_time_zone_does_not_reuse_its_old_counter(open_engine: Callable[..., Store]) -> None:
    """Issue 12, 1(a): $60, → Asia/Tokyo, $30, → UTC, $30: the last $30 is refused ($120 > $100 in one UTC day)."""
    clock = Clock(T0)
    store = open_engine(clock)
    budgets: BudgetStore = store  # what these tests exercise; `store` arranges
    await store.insert_key(key_record(store, "vk_a", "t:1"), "h1")
    b = budget_record("bud_tz", T0, daily_usd_cap=100 * USD)
    await budgets.insert_budget(b)
    assert await charge(store, "vk_a", 60 * USD)
    assert await budgets.update_budget(replace(b, timezone="Asia/Tokyo"))
    clock.ms += 60_000
    assert await charge(store, "vk_a", 30 * USD)  # $90 in the Tokyo day that began 15:00 UTC
    assert await budgets.update_budget(replace(b, timezone="UTC"))
    clock.ms += 60_000
    assert not await charge(store, "vk_a", 30 * USD)  # $90 + $30 > $100 in this UTC day
    day = (await store.counters_for("budget:bud_tz", [("daily_usd", window_start(Window.DAY, clock.ms))]))["daily_usd"]
    assert (day.used, day.reserved) == (90 * USD, 0)
    assert await charge(store, "vk_a", 10 * USD)  # exactly up to the cap
    await check_books(store)


async def test_a_request_in_flight_across_a_budget_create_and_a_zone_change_settles_into_the_new_counter(
    open_engine: Callable[..., Store],
) -> None:
    clock = Clock(T0)
    store = open_engine(clock)
    budgets: BudgetStore = store  # what these tests exercise; `store` arranges
    await store.insert_key(key_record(store, "vk_a", "t:1"), "h1")
    held = await hold(store, "vk_a", 40 * USD)  # in flight before the budget exists
    assert held is not None
    b = budget_record("bud_f", T0, daily_usd_cap=100 * USD, monthly_usd_cap=500 * USD)
    await budgets.insert_budget(b)
    await check_books(store)  # $40 reserved in the new counters
    assert await budgets.update_budget(replace(b, timezone="Asia/Tokyo"))
    await check_books(store)
    await settle_held(store, held, 25 * USD)  # cheaper than reserved
    await check_books(store)
    tokyo = window_start(Window.DAY, clock.ms, "Asia/Tokyo")
    day = (await store.counters_for("budget:bud_f", [("daily_usd", tokyo)]))["daily_usd"]
    assert (day.used, day.reserved) == (25 * USD, 0)


async def test_a_deleted_budget_is_gone_with_its_counters(store: Store, clock: Clock, budgets: BudgetStore) -> None:
    """Budgets are listed oldest first; a delete removes the budget and every counter of it, and
    changing or deleting a budget that is not there answers False."""
    await store.insert_key(key_record(store, "vk_a", "t:1"), "h1")
    first, second = budget_record("bud_1", clock.ms, daily_usd_cap=100 * USD), budget_record("bud_2", clock.ms + 1)
    await budgets.insert_budget(first)
    await budgets.insert_budget(second)
    assert [b.id for b in await budgets.list_budgets()] == ["bud_1", "bud_2"]
    assert await budgets.get_budget("bud_1") == first
    assert await charge(store, "vk_a", 60 * USD)
    ws = window_start(Window.DAY, clock.ms)
    assert (await budgets.counters_for("budget:bud_1", [("daily_usd", ws)]))["daily_usd"].used == 60 * USD
    assert await budgets.delete_budget("bud_1")
    assert await budgets.get_budget("bud_1") is None and [b.id for b in await budgets.list_budgets()] == ["bud_2"]
    assert (await budgets.counters_for("budget:bud_1", [("daily_usd", ws)]))["daily_usd"].used == 0
    assert not await budgets.delete_budget("bud_1")
    assert not await budgets.update_budget(replace(first, name="again"))
    assert await charge(store, "vk_a", 60 * USD)  # its cap no longer applies


# -- the generator ----------------------------------------------------------------------------

SCOPES = [
    ("all", None),
    ("label_prefix", "acme:"),
    ("label_prefix", "ACME:"),
    ("vendor", "stripe"),
    ("label_prefix", ""),
]
LABELS = ["acme:a", "ACME:b", "acme:", "other", "acme"]

op = st.one_of(
    st.tuples(st.just("charge"), st.integers(0, 4), st.integers(1, 60), st.integers(0, 60)),
    st.tuples(st.just("hold"), st.integers(0, 4), st.integers(1, 60)),
    st.tuples(st.just("settle"), st.integers(0, 9), st.integers(0, 60)),
    st.tuples(st.just("create"), st.integers(0, len(SCOPES) - 1), st.sampled_from(ZONES), st.integers(20, 300)),
    st.tuples(st.just("zone"), st.integers(0, 9), st.sampled_from(ZONES)),
    st.tuples(st.just("cap"), st.integers(0, 9), st.one_of(st.none(), st.integers(20, 300))),
    st.tuples(st.just("advance"), st.integers(1, 20 * 60)),  # minutes
    st.tuples(st.just("relabel"), st.integers(0, 4), st.integers(0, len(LABELS))),  # len(LABELS): no label
)


@dataclass
class _Run:
    clock: Clock
    budgets: list[BudgetRecord] = field(default_factory=list)
    held: list[tuple[AuditRow, list[ReservedItem]]] = field(default_factory=list)


async def _step(store: Store, run: _Run, o: tuple[Any, ...], n: int) -> None:
    name = o[0]
    if name == "charge":
        await charge(store, f"vk_{n}_{o[1]}", o[2] * USD, o[3] * USD)
    elif name == "hold":
        held = await hold(store, f"vk_{n}_{o[1]}", o[2] * USD)
        if held is not None:
            run.held.append(held)
    elif name == "settle" and run.held:
        await settle_held(store, run.held.pop(o[1] % len(run.held)), o[2] * USD)
    elif name == "create":
        kind, value = SCOPES[o[1]]
        b = budget_record(f"bud_{n}_{len(run.budgets)}", run.clock.ms, scope=kind, value=value, timezone=o[2])
        b = replace(b, daily_usd_cap=o[3] * USD, monthly_usd_cap=3 * o[3] * USD)
        await store.insert_budget(b)
        run.budgets.append(b)
    elif name in ("zone", "cap") and run.budgets:
        i = o[1] % len(run.budgets)
        b = run.budgets[i]
        b = (
            replace(b, timezone=o[2])
            if name == "zone"
            else replace(b, daily_usd_cap=None if o[2] is None else o[2] * USD)
        )
        assert await store.update_budget(b)
        run.budgets[i] = b
    elif name == "advance":
        run.clock.ms += o[1] * 60_000
    elif name == "relabel":
        await relabel(store, f"vk_{n}_{o[1]}", LABELS[o[2]] if o[2] < len(LABELS) else None)


_examples = iter(range(10**9))
_stores: weakref.WeakKeyDictionary[Callable[..., Store], tuple[Store, Clock]] = weakref.WeakKeyDictionary()


def _shared_store(open_engine: Callable[..., Store]) -> tuple[Store, Clock]:
    """The one store (and its clock) of this test run; the fixture closes it at the end."""
    if open_engine not in _stores:
        clock = Clock(T0)
        _stores[open_engine] = (open_engine(clock), clock)
    return _stores[open_engine]


@settings(max_examples=examples(40), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=st.lists(op, max_size=25))
@example(script=[("charge", 0, 60, 60), ("zone", 0, "Asia/Tokyo"), ("charge", 0, 30, 30), ("zone", 0, "UTC")])
@example(script=[("hold", 0, 40), ("create", 0, "UTC", 100), ("zone", 0, "Asia/Tokyo"), ("settle", 0, 10)])
@example(script=[("charge", 3, 50, 50), ("hold", 3, 40), ("relabel", 3, 0), ("settle", 0, 30), ("relabel", 3, 3)])
def test_every_budget_counter_equals_the_audit_rows_it_covers(
    open_engine: Callable[..., Store], script: list[tuple[Any, ...]]
) -> None:
    """Random interleavings of charges (settled at once, or held in flight and settled later at
    another cost) with budget creates, time-zone and cap changes, key relabels (into, out of and
    between `label_prefix` budgets, or to no label) and clock steps; after every step each budget
    counter of the current windows equals the reference sum over the keys it covers now."""
    n = next(_examples)
    # one store for every example (a fresh database each would cost a migration): each example
    # has its own keys and budgets and a clock 400 days past the last one's

    store, clock = _shared_store(open_engine)
    clock.ms = T0 + n * 400 * DAY_MS

    async def go() -> None:
        run = _Run(clock)
        if n == 0 or not script or script[0][0] != "create":  # sometimes the budget predates the spend
            run.budgets.append(
                budget_record(f"bud_{n}_0", clock.ms, scope="label_prefix", value="acme:", daily_usd_cap=150 * USD)
            )
            await store.insert_budget(run.budgets[0])
        for i, label in enumerate(LABELS):
            await store.insert_key(key_record(store, f"vk_{n}_{i}", label), f"h_{n}_{i}")
        try:
            for o in script:
                await _step(store, run, o, n)
                await check_books(store)
            while run.held:
                await settle_held(store, run.held.pop(), 7 * USD)
            await check_books(store)
        finally:
            for b in run.budgets:
                await store.delete_budget(b.id)

    asyncio.run(go())


def test_tokyo_window_used_by_the_example_begins_before_the_first_charge() -> None:
    """The example's clock: the Tokyo day that contains T0 began at 15:00 UTC, before T0."""
    tokyo = window_start(Window.DAY, T0, "Asia/Tokyo")
    assert tokyo == int(dt.datetime(2026, 3, 11, tzinfo=ZoneInfo("Asia/Tokyo")).timestamp() * 1000) < T0
