"""Audit retention: old rows go in batches (exported first if asked); rows still needed stay."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from click.testing import CliRunner

from keybrake.cli import main
from keybrake.proxy.retention import purge, purge_all
from keybrake.store import open_store
from keybrake.store.base import AuditRow, CapSpec, Delivery, KeyRecord, LedgerEntry, Settlement, Store, Window
from keybrake.store.ids import new_audit_id
from keybrake.timefmt import DAY_MS
from tests import harness
from tests.store.test_store_contract import Clock, key

NOW = 1_800_000_000_000


def _row(ts: int, verdict: str = "allowed") -> AuditRow:
    return AuditRow(id=new_audit_id(ts), ts=ts, method="GET", path="/v1/balance", verdict=verdict, key_id="vk_1")


async def test_purge_deletes_old_rows_in_batches_and_exports_them_first(tmp_path: Path) -> None:
    clock = Clock(NOW - 100 * DAY_MS)
    store = open_store(harness.DATABASE_URL, tmp_path, migrate=False, clock=clock)
    await store.insert_key(key(store), "h1")
    old = [_row(NOW - (100 - i) * DAY_MS + i) for i in range(25)]  # 100 to 76 days old
    for r in old:
        await store.insert_audit(r)
    # a kept reservation (a pending estimate) from 95 days ago must survive
    kept = _row(NOW - 95 * DAY_MS + 7)
    cap = CapSpec("key", "vk_1", "total_usd_cap", "total_usd", Window.TOTAL, None, 5, True)
    clock.ms = kept.ts
    await store.reserve("vk_1", 1, [cap], kept, "ins")
    clock.ms = NOW
    recent = _row(NOW - DAY_MS)
    await store.insert_audit(recent)

    out = tmp_path / "purged"
    deleted = await purge(store, 90, out, batch=4)
    assert deleted == 10  # 100 to 91 days old, in batches of 4
    exported = [json.loads(line) for f in sorted(out.iterdir()) for line in f.read_text().splitlines()]
    assert [e["id"] for e in exported] == [r.id for r in old[:10]]
    assert all((out / f.name).stat().st_mode & 0o777 == 0o600 for f in out.iterdir())
    for r in old[:10]:
        assert await store.get_audit(r.id) is None
    for r in (*old[10:], kept, recent):
        assert await store.get_audit(r.id) is not None
    assert await purge(store, 0, None) == 0  # 0 = keep forever
    await store.close()


def test_purge_cli(tmp_path: Path) -> None:
    from tests.harness import KeybrakeThread

    with KeybrakeThread(tmp_path / "d"):
        pass
    runner = CliRunner()
    off = runner.invoke(main, ["audit", "purge", "--older-than-days", "0", "--data-dir", str(tmp_path / "d")])
    assert off.exit_code != 0 and "retention is off" in off.output
    ok = runner.invoke(main, ["audit", "purge", "--older-than-days", "30", "--data-dir", str(tmp_path / "d")])
    assert ok.exit_code == 0 and "deleted 0 audit rows older than 30 days" in ok.output


# -- retention covers everything that grows (issue 12, kind 6) ----------------------------------


def _caps(key_id: str, amount: int, total: int | None = None) -> list[CapSpec]:
    return [
        CapSpec("key", key_id, "daily_usd_cap", "daily_usd", Window.DAY, None, amount, True),
        CapSpec("key", key_id, "total_usd_cap", "total_usd", Window.TOTAL, total, amount, True),
        CapSpec("key", key_id, "max_requests_per_hour", "hourly_requests", Window.HOUR, None, 1, False),
    ]


async def _charge(store: Store, key_id: str, amount: int, *, keep: bool = False, total: int | None = None) -> AuditRow:
    """One reserved and settled charge at the store's clock (`keep`: the outcome stays unknown)."""
    r = AuditRow(
        id=new_audit_id(store.now_ms()), ts=store.now_ms(), method="POST", path="/v1/charges",
        verdict="in_flight", key_id=key_id, credential="default",
    )  # fmt: skip
    res = await store.reserve(key_id, 1, _caps(key_id, amount, total), r, "me")
    assert res.cap_hit is None and res.items, res
    verdict = "outcome_unknown" if keep else "allowed"
    await store.settle(r, res.items, Settlement(verdict, amount, "estimate", "charge", keep, True), "daily_usd")
    return r


def _delivery(i: int, dest: str, created: int, state: str) -> Delivery:
    return Delivery(f"dlv_{dest}_{i}", f"evt_{dest}_{i}", dest, "cap.threshold", "{}", created, created, 1, state)


async def _count(store: Store, sql: str, *args: Any) -> int:
    return int((await store._run(lambda: store._read(sql, args)))[0][0])  # type: ignore[attr-defined]


async def test_purge_covers_counters_ledger_and_outbox_of_the_period(tmp_path: Path) -> None:
    """Issue 12, kind 6: KEYBRAKE_AUDIT_RETENTION_DAYS purged 20 audit rows to 0 but kept their
    20 counters, 10 ledger rows and 20 outbox rows forever. Now they go, and what is live stays."""
    clock = Clock(NOW - 200 * DAY_MS)
    store = open_store(harness.DATABASE_URL, tmp_path, migrate=False, clock=clock)
    k = KeyRecord("vk_1", "stripe", "default", "t:1", {}, {}, 1, "active", clock.ms, NOW + 10 * DAY_MS,
                  None, None, None)  # fmt: skip
    await store.insert_key(k, "h1")
    for day in range(20):  # 200 to 181 days ago: one charge a day, an object every other day
        clock.ms = NOW - (200 - day) * DAY_MS + 3_600_000
        await _charge(store, "vk_1", 1_000_000)
        if day % 2 == 0:
            await store.ledger_put("default", [LedgerEntry(f"ch_{day}", "charge", None, None, "usd", 100)])
        await store.enqueue([_delivery(day, "alr_1", clock.ms, "delivered")], None)
    clock.ms = NOW - 3_600_000  # today: a live window, a pending delivery, a fresh object
    await _charge(store, "vk_1", 2_000_000)
    await store.ledger_put("default", [LedgerEntry("ch_today", "charge", None, None, "usd", 100)])
    await store.enqueue([_delivery(99, "alr_1", clock.ms, "pending")], None)
    clock.ms = NOW
    assert await _count(store, "SELECT count(*) FROM audit WHERE ts < ?", NOW - 90 * DAY_MS) == 20
    assert (
        await _count(
            store,
            "SELECT count(*) FROM counters WHERE cap = 'daily_usd' AND window_start > 0 AND window_start < ?",
            NOW - 90 * DAY_MS,
        )
        == 20
    )
    assert await _count(store, "SELECT count(*) FROM ledger") == 11
    assert await _count(store, "SELECT count(*) FROM alert_outbox") == 21
    live_before = await store.counters_for("key:vk_1", [("daily_usd", NOW - NOW % DAY_MS), ("total_usd", 0)])

    counts = await purge_all(store, 90, None)
    assert counts["audit"] == 20 and counts["ledger"] == 10 and counts["alert_outbox"] == 20
    assert counts["counters"] == 40  # 20 daily and 20 hourly request counters
    assert await _count(store, "SELECT count(*) FROM audit") == 1
    assert (
        await _count(
            store, "SELECT count(*) FROM counters WHERE window_start > 0 AND window_start < ?", NOW - 90 * DAY_MS
        )
        == 0
    )
    assert await _count(store, "SELECT count(*) FROM ledger WHERE object_id = 'ch_today'") == 1
    assert await _count(store, "SELECT count(*) FROM ledger") == 1
    assert await _count(store, "SELECT count(*) FROM alert_outbox") == 1  # the pending one
    assert await store.counters_for("key:vk_1", [("daily_usd", NOW - NOW % DAY_MS), ("total_usd", 0)]) == live_before
    assert live_before["total_usd"].used == 22_000_000  # the total window never ends: it stays whole
    assert await store.get_key("vk_1") is not None
    await store.close()
