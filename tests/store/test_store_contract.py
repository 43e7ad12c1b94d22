"""The store contract: exact reservations under contention, settle, revoke visibility, recovery.

Written against the `Store` interface; every test runs on SQLite and on PostgreSQL (conftest.py).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from keybrake.core.timefmt import DAY_MS
from keybrake.core.windows import Window
from keybrake.store import open_store
from keybrake.store.base import AuditRow, CapSpec, KeyRecord, KeyState, Settlement, Store
from keybrake.store.ids import new_audit_id

DAY0 = 1_790_000_000_000 - 1_790_000_000_000 % DAY_MS  # a UTC midnight


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


@pytest.fixture
def clock() -> Clock:
    return Clock(DAY0 + 3_600_000)


@pytest.fixture
def store(open_engine: Callable[..., Store], clock: Clock) -> Store:
    return open_engine(clock)


def key(store: Store, key_id: str = "vk_1") -> KeyRecord:
    return KeyRecord(
        key_id,
        "stripe",
        "default",
        "t:1",
        {},
        {},
        1,
        "active",
        store.now_ms(),
        store.now_ms() + DAY_MS * 10,
        None,
        None,
        None,
    )


def caps(
    key_id: str, amount: int, daily: int | None, total: int | None = None, hourly: int | None = None
) -> list[CapSpec]:
    return [
        CapSpec("key", key_id, "daily_usd_cap", "daily_usd", Window.DAY, daily, amount, True),
        CapSpec("key", key_id, "total_usd_cap", "total_usd", Window.TOTAL, total, amount, True),
        CapSpec("key", key_id, "max_requests_per_hour", "hourly_requests", Window.HOUR, hourly, 1, False),
    ]


n = 0


def row(store: Store) -> AuditRow:
    global n
    n += 1
    return AuditRow(
        id=f"kbr_{n:08d}{os.getpid()}",
        ts=store.now_ms(),
        method="POST",
        path="/v1/charges",
        verdict="in_flight",
        key_id="vk_1",
    )


async def test_reserve_is_exact_and_all_or_nothing(store: Store) -> None:
    await store.insert_key(key(store), "h1")
    granted = 0
    for _ in range(15):
        r = await store.reserve("vk_1", 1, caps("vk_1", 1_000_000, 10_000_000, hourly=12), row(store), "me")
        if r.cap_hit is None:
            granted += 1
        else:
            assert r.cap_hit.name == "daily_usd_cap"
            assert r.cap_hit.used == 10_000_000
    assert granted == 10
    counters = await store.counters_for(
        "key:vk_1", [("daily_usd", DAY0), ("hourly_requests", DAY0 + 3_600_000), ("total_usd", 0)]
    )
    # the refused attempts changed no counter, not even the ones checked before the cap that refused
    assert counters["daily_usd"].reserved == 10_000_000
    assert counters["hourly_requests"].reserved == 10
    assert counters["total_usd"].reserved == 10_000_000


async def test_settle_moves_reservation_to_cost(store: Store) -> None:
    await store.insert_key(key(store), "h1")
    r0 = row(store)
    res = await store.reserve("vk_1", 1, caps("vk_1", 5_000_000, 10_000_000), r0, "me")
    assert res.remaining_usd == 5_000_000
    r0.verdict = "allowed"
    await store.settle(r0, res.items, Settlement("allowed", 2_000_000, "response", "charge", False, True), "daily_usd")
    c = await store.counters_for("key:vk_1", [("daily_usd", DAY0)])
    assert (c["daily_usd"].used, c["daily_usd"].reserved) == (2_000_000, 0)
    assert r0.cap_usage_after_usd == 2_000_000
    stored = await store.get_audit(r0.id)
    assert stored is not None and stored["verdict"] == "allowed" and stored["cost_usd"] == 2_000_000


async def test_unknown_outcome_keeps_the_reservation(store: Store) -> None:
    await store.insert_key(key(store), "h1")
    r0 = row(store)
    res = await store.reserve("vk_1", 1, caps("vk_1", 5_000_000, 10_000_000), r0, "me")
    r0.verdict = "outcome_unknown"
    await store.settle(r0, res.items, Settlement("outcome_unknown", 5_000_000, "estimate", "charge", True, True), None)
    c = await store.counters_for("key:vk_1", [("daily_usd", DAY0)])
    assert c["daily_usd"].reserved == 5_000_000


async def test_daily_window_rolls_over_at_utc_midnight(store: Store, clock: Clock) -> None:
    await store.insert_key(key(store), "h1")
    assert (await store.reserve("vk_1", 1, caps("vk_1", 10_000_000, 10_000_000), row(store), "me")).cap_hit is None
    assert (await store.reserve("vk_1", 1, caps("vk_1", 1, 10_000_000), row(store), "me")).cap_hit is not None
    clock.ms = DAY0 + DAY_MS  # 00:00:00.000 UTC the next day
    assert (await store.reserve("vk_1", 1, caps("vk_1", 10_000_000, 10_000_000), row(store), "me")).cap_hit is None


async def test_revoke_and_patch_are_seen_by_the_reservation(store: Store) -> None:
    await store.insert_key(key(store), "h1")
    assert await store.update_key(
        "vk_1", 1, label="x", metadata={}, policy={"daily_usd_cap": 1}, expires_at=store.now_ms() + 1000
    )
    r = await store.reserve("vk_1", 1, caps("vk_1", 1, None), row(store), "me")
    assert r.state is KeyState.CHANGED and r.key is not None and r.key.policy_version == 2
    await store.revoke_key("vk_1", "test")
    r = await store.reserve("vk_1", 2, caps("vk_1", 1, None), row(store), "me")
    assert r.state is KeyState.REVOKED


async def test_expiry_is_checked_by_the_store_clock(store: Store, clock: Clock) -> None:
    k = key(store)
    await store.insert_key(k, "h1")
    clock.ms = k.expires_at
    r = await store.reserve("vk_1", 1, caps("vk_1", 1, None), row(store), "me")
    assert r.state is KeyState.EXPIRED


async def test_concurrent_tasks_cannot_overshoot(store: Store) -> None:
    await store.insert_key(key(store), "h1")

    async def one() -> bool:
        await asyncio.sleep(0)
        r = await store.reserve("vk_1", 1, caps("vk_1", 1_000_000, 20_000_000), row(store), "me")
        return r.cap_hit is None

    results = await asyncio.gather(*(one() for _ in range(100)))
    assert sum(results) == 20


def _hammer(url: str | None, path: str, attempts: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    async def go() -> int:
        s = open_store(url, Path(path), migrate=False)
        granted = 0
        for i in range(attempts):
            r = AuditRow(id=f"kbr_{os.getpid()}_{i}", ts=s.now_ms(), method="POST", path="/", verdict="in_flight")
            res = await s.reserve("vk_1", 1, caps("vk_1", 1_000_000, 300_000_000), r, "p")
            granted += res.cap_hit is None
        await s.close()
        return granted

    out.put(asyncio.run(go()))


def test_two_processes_cannot_overshoot(tmp_path: Path, engine_url: str | None) -> None:
    s = open_store(engine_url, tmp_path, migrate=False)

    async def setup() -> None:
        await s.insert_key(key(s), "h1")
        await s.close()

    asyncio.run(setup())
    ctx = multiprocessing.get_context("spawn")
    q = ctx.Queue()
    procs = [ctx.Process(target=_hammer, args=(engine_url, str(tmp_path), 250, q)) for _ in range(2)]
    for p in procs:
        p.start()
    total = q.get(timeout=60) + q.get(timeout=60)
    for p in procs:
        p.join(timeout=10)
    assert total == 300


async def test_recovery_marks_rows_of_dead_instances(store: Store) -> None:
    await store.insert_key(key(store), "h1")
    await store.register_instance("ins_dead", socket.gethostname(), 2**22 + 12345)  # no such pid
    r0 = row(store)
    await store.reserve("vk_1", 1, caps("vk_1", 3_000_000, None), r0, "ins_dead")
    await store.register_instance("ins_me", socket.gethostname(), os.getpid())
    assert await store.recover_in_flight("ins_me", socket.gethostname(), 30_000) == 1
    got = await store.get_audit(r0.id)
    assert got is not None and got["verdict"] == "outcome_unknown"
    c = await store.counters_for("key:vk_1", [("total_usd", 0)])
    assert c["total_usd"].reserved == 3_000_000


async def test_a_row_in_flight_past_any_timeout_is_recovered_even_with_a_live_owner(store: Store, clock: Clock) -> None:
    """Its settlement was lost (e.g. the database crashed after acknowledging it): not left in flight forever."""
    host = socket.gethostname()
    await store.insert_key(key(store), "h1")
    await store.register_instance("ins_me", host, os.getpid())
    r0 = AuditRow(id=new_audit_id(clock.ms), ts=clock.ms, method="POST", path="/v1/charges", verdict="in_flight")
    await store.reserve("vk_1", 1, caps("vk_1", 3_000_000, None), r0, "ins_me")
    assert await store.recover_in_flight("ins_me", host, 30_000, 60_000) == 0  # young, owner alive
    clock.ms += 61_000
    await store.heartbeat("ins_me", host, os.getpid())
    assert await store.recover_in_flight("ins_me", host, 30_000, 60_000) == 1
    got = await store.get_audit(r0.id)
    assert got is not None and got["verdict"] == "outcome_unknown"
    assert (await store.counters_for("key:vk_1", [("total_usd", 0)]))["total_usd"].reserved == 3_000_000
