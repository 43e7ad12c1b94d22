"""The budgets role's books across key relabels (issue 12, kind 1): a relabel moves a key's settled and
in-flight spend between the `label_prefix` budgets it leaves and joins, on every engine and under
load on two replicas (the reference model: tests/store/budget_books.py).
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import pytest

from keybrake.core.windows import Window, window_start
from keybrake.store.base import (
    AuditRow,
    BudgetStore,
    KeyState,
    Store,
)
from keybrake.store.ids import new_audit_id
from tests.store.budget_books import (
    T0,
    USD,
    Replica,
    add_budget,
    add_key,
    budget_record,
    charge,
    charging_agents,
    check_books,
    hold,
    key_caps,
    key_record,
    relabel,
    seen,
    settle_held,
)
from tests.store.contract import Clock
from tests.waits import wait_until

# -- the example -------------------------------------------------------------------


async def test_a_relabel_moves_settled_and_in_flight_spend_between_budgets(open_engine: Callable[..., Store]) -> None:
    """Key "x:1" spends $90 today and holds $5 in flight; relabelled "acme:1" under an "acme:"
    budget ($100 a day) the budget holds $90 used + $5 reserved, the held row settles into it, and
    a $10 charge is refused ($90 + $3 + $10 > $100) where it used to be admitted from $0."""
    clock = Clock(T0)
    store = open_engine(clock)
    budgets: BudgetStore = store  # what these tests exercise; `store` arranges
    await store.insert_key(key_record(store, "vk_x", "x:1"), "hx")
    b = budget_record("bud_acme", T0, scope="label_prefix", value="acme:", daily_usd_cap=100 * USD)
    await budgets.insert_budget(b)
    assert await charge(store, "vk_x", 90 * USD)
    held = await hold(store, "vk_x", 5 * USD)
    assert held is not None
    await relabel(store, "vk_x", "acme:1")
    ws = window_start(Window.DAY, clock.ms)
    day = (await store.counters_for("budget:bud_acme", [("daily_usd", ws)]))["daily_usd"]
    assert (day.used, day.reserved) == (90 * USD, 5 * USD)
    await check_books(store)
    await settle_held(store, held, 3 * USD)
    day = (await store.counters_for("budget:bud_acme", [("daily_usd", ws)]))["daily_usd"]
    assert (day.used, day.reserved) == (93 * USD, 0)
    assert not await charge(store, "vk_x", 10 * USD)
    assert await charge(store, "vk_x", 7 * USD)  # exactly up to the cap
    held = await hold(store, "vk_x", 4 * USD)
    assert held is None  # the budget is full
    held = await hold(store, "vk_x", 0)
    assert held is not None
    await relabel(store, "vk_x", "x:1")  # out again: the budget holds nothing of the key's
    day = (await store.counters_for("budget:bud_acme", [("daily_usd", ws)]))["daily_usd"]
    assert (day.used, day.reserved) == (0, 0)
    await settle_held(store, held, 2 * USD)  # settles outside the budget it left
    await check_books(store)
    assert (await store.counters_for("budget:bud_acme", [("daily_usd", ws)]))["daily_usd"].used == 0


# -- replicas under load (PostgreSQL) ---------------------------------------------------------


async def _charge_now(s: Store, kid: str, usd: int) -> None:
    """A charge at the key's current policy version (a relabel elsewhere changes it), as the proxy
    reloads a changed key and reserves again."""
    while True:
        k = await s.get_key(kid)
        assert k is not None
        now = s.now_ms()
        row = AuditRow(id=new_audit_id(now), ts=now, method="POST", path="/v1/charges", verdict="in_flight", key_id=kid)
        row.reserved_usd = usd
        res = await s.reserve(kid, k.policy_version, key_caps(kid, usd), row, "me")
        if res.state is KeyState.CHANGED:
            continue
        assert res.state is KeyState.OK and res.cap_hit is None
        await settle_held(s, (row, res.items), usd)
        return


async def _relabel_now(s: Store, kid: str, label: str) -> None:
    while True:
        k = await s.get_key(kid)
        assert k is not None
        if await s.update_key(kid, k.policy_version, label=label, metadata={}, policy={}, expires_at=k.expires_at):
            return


@pytest.mark.pg_cluster
def test_relabels_on_one_replica_while_both_charge_keep_the_books(pg_url: str, tmp_path: Path) -> None:
    """Two stores (replicas) on one database, 12 threads charging 6 keys through both while a
    thread on one replica moves keys into and out of an "acme:" budget: the budget's counter equals
    what the keys it covers at the end spent today, to the µUSD, and every other counter too."""
    replicas = [Replica(pg_url, tmp_path) for _ in range(2)]
    try:
        kids = [f"vk_m_{i}" for i in range(6)]
        for i, kid in enumerate(kids):
            replicas[i % 2].call(add_key, kid, f"x:{i}")
        now = replicas[0].store.now_ms()
        b = budget_record("bud_moves", now, scope="label_prefix", value="acme:", daily_usd_cap=10**6 * USD)
        replicas[0].call(add_budget, b)
        with charging_agents(
            replicas, 12, lambda r, i, rng: r.call(_charge_now, kids[i % 6], rng.randint(1, 500) * 10_000)
        ) as count:
            rng = random.Random(7)
            last = [0]  # the count at the previous relabel
            for _ in range(24):  # charges run between the relabels
                wait_until(lambda: count[0] > last[0], "a charge between two relabels")
                last[0] = count[0]
                kid = rng.choice(kids)
                replicas[1].call(_relabel_now, kid, rng.choice(["acme:", "x:"]) + kid)
        seen(replicas[0].store).keys.clear()
        replicas[0].call(check_books)
    finally:
        for r in replicas:
            r.close()
