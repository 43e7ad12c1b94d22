"""The reservation role (`ReservationStore`, the proxy pipeline's): exact reservations under
contention, settle, revoke and expiry seen by the reservation.

Every test runs on SQLite and on PostgreSQL (conftest.py).
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
from dataclasses import replace
from pathlib import Path

from keybrake.core.ledger import LedgerEntry
from keybrake.core.timefmt import DAY_MS
from keybrake.store import open_store
from keybrake.store.base import AuditRow, CredentialRecord, KeyState, ReservationStore, Settlement, Store
from tests.harness import store_options
from tests.store.contract import DAY0, Clock, caps, key, row


async def test_reserve_is_exact_and_all_or_nothing(store: Store, reservations: ReservationStore) -> None:
    await store.insert_key(key(store), "h1")
    granted = 0
    for _ in range(15):
        r = await reservations.reserve("vk_1", 1, caps("vk_1", 1_000_000, 10_000_000, hourly=12), row(store), "me")
        if r.cap_hit is None:
            granted += 1
        else:
            assert r.cap_hit.name == "daily_usd_cap"
            assert r.cap_hit.used == 10_000_000
    assert granted == 10
    counters = await reservations.counters_for(
        "key:vk_1", [("daily_usd", DAY0), ("hourly_requests", DAY0 + 3_600_000), ("total_usd", 0)]
    )
    # the refused attempts changed no counter, not even the ones checked before the cap that refused
    assert counters["daily_usd"].reserved == 10_000_000
    assert counters["hourly_requests"].reserved == 10
    assert counters["total_usd"].reserved == 10_000_000


async def test_settle_moves_reservation_to_cost(store: Store, reservations: ReservationStore) -> None:
    await store.insert_key(key(store), "h1")
    r0 = row(store)
    res = await reservations.reserve("vk_1", 1, caps("vk_1", 5_000_000, 10_000_000), r0, "me")
    assert res.remaining_usd == 5_000_000
    r0.verdict = "allowed"
    await reservations.settle(
        r0, res.items, Settlement("allowed", 2_000_000, "response", "charge", False, True), "daily_usd"
    )
    c = await reservations.counters_for("key:vk_1", [("daily_usd", DAY0)])
    assert (c["daily_usd"].used, c["daily_usd"].reserved) == (2_000_000, 0)
    assert r0.cap_usage_after_usd == 2_000_000
    stored = await store.get_audit(r0.id)
    assert stored is not None and stored["verdict"] == "allowed" and stored["cost_usd"] == 2_000_000


async def test_unknown_outcome_keeps_the_reservation(store: Store, reservations: ReservationStore) -> None:
    await store.insert_key(key(store), "h1")
    r0 = row(store)
    res = await reservations.reserve("vk_1", 1, caps("vk_1", 5_000_000, 10_000_000), r0, "me")
    r0.verdict = "outcome_unknown"
    await reservations.settle(
        r0, res.items, Settlement("outcome_unknown", 5_000_000, "estimate", "charge", True, True), None
    )
    c = await reservations.counters_for("key:vk_1", [("daily_usd", DAY0)])
    assert c["daily_usd"].reserved == 5_000_000


async def test_daily_window_rolls_over_at_utc_midnight(
    store: Store, clock: Clock, reservations: ReservationStore
) -> None:
    await store.insert_key(key(store), "h1")
    assert (
        await reservations.reserve("vk_1", 1, caps("vk_1", 10_000_000, 10_000_000), row(store), "me")
    ).cap_hit is None
    assert (await reservations.reserve("vk_1", 1, caps("vk_1", 1, 10_000_000), row(store), "me")).cap_hit is not None
    clock.ms = DAY0 + DAY_MS  # 00:00:00.000 UTC the next day
    assert (
        await reservations.reserve("vk_1", 1, caps("vk_1", 10_000_000, 10_000_000), row(store), "me")
    ).cap_hit is None


async def test_revoke_and_patch_are_seen_by_the_reservation(store: Store, reservations: ReservationStore) -> None:
    await store.insert_key(key(store), "h1")
    assert await store.update_key(
        "vk_1", 1, label="x", metadata={}, policy={"daily_usd_cap": 1}, expires_at=store.now_ms() + 1000
    )
    r = await reservations.reserve("vk_1", 1, caps("vk_1", 1, None), row(store), "me")
    assert r.state is KeyState.CHANGED and r.key is not None and r.key.policy_version == 2
    await store.revoke_key("vk_1", "test")
    r = await reservations.reserve("vk_1", 2, caps("vk_1", 1, None), row(store), "me")
    assert r.state is KeyState.REVOKED


async def test_expiry_is_checked_by_the_store_clock(store: Store, clock: Clock, reservations: ReservationStore) -> None:
    k = key(store)
    await store.insert_key(k, "h1")
    clock.ms = k.expires_at
    r = await reservations.reserve("vk_1", 1, caps("vk_1", 1, None), row(store), "me")
    assert r.state is KeyState.EXPIRED


async def test_concurrent_tasks_cannot_overshoot(store: Store, reservations: ReservationStore) -> None:
    await store.insert_key(key(store), "h1")

    async def one() -> bool:
        await asyncio.sleep(0)
        r = await reservations.reserve("vk_1", 1, caps("vk_1", 1_000_000, 20_000_000), row(store), "me")
        return r.cap_hit is None

    results = await asyncio.gather(*(one() for _ in range(100)))
    assert sum(results) == 20


def _hammer(url: str | None, path: str, attempts: int, out: multiprocessing.Queue) -> None:  # type: ignore[type-arg]
    async def go() -> int:
        s = open_store(url, Path(path), migrate=False, pg=store_options())
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


async def test_lookups_denial_rows_request_counts_and_the_object_ledger(
    store: Store, reservations: ReservationStore
) -> None:
    """The pipeline's small calls outside a reservation: a key by its token hash, a credential by
    name, a denial's row, one request counted without a reservation, and the object ledger (facts
    merge: a later answer that omits a fact keeps the one known)."""
    await store.insert_key(key(store), "h1")
    found = await reservations.key_by_hash("h1")
    assert found is not None and found.id == "vk_1" and await reservations.key_by_hash("h2") is None
    cred = CredentialRecord("default", "stripe", b"sealed", "sk_…", None, None, store.now_ms(), None, "cg_1")
    assert await store.insert_credential(cred)
    assert await reservations.credential("default") == cred and await reservations.credential("other") is None
    denial = replace(row(store), verdict="denied_policy", status=403, error_code="endpoint_not_allowed")
    await reservations.insert_audit(denial)
    got = await store.get_audit(denial.id)
    assert got is not None and (got["verdict"], got["status"], got["error_code"]) == (
        "denied_policy", 403, "endpoint_not_allowed"
    )  # fmt: skip
    hour = DAY0 + 3_600_000
    for _ in range(2):
        await reservations.count_request("vk_1", hour)
    counted = (await reservations.counters_for("key:vk_1", [("hourly_requests", hour)]))["hourly_requests"]
    assert (counted.used, counted.reserved, counted.window_start) == (2, 0, hour)
    assert await reservations.ledger_get("default", ["ch_1"]) == {}
    await reservations.ledger_put("default", [LedgerEntry("ch_1", "charge", "cus_1", None, "usd", 500)])
    await reservations.ledger_put("default", [LedgerEntry("ch_1", "charge", None, "acct_1", "usd", 500, refunded=100)])
    facts = await reservations.ledger_get("default", ["ch_1", "ch_2"])
    assert facts == {"ch_1": LedgerEntry("ch_1", "charge", "cus_1", "acct_1", "usd", 500, 0, 100, None)}
    assert await reservations.ledger_get("other", ["ch_1"]) == {}  # per credential
