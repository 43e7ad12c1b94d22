"""Audit retention: old rows go in batches (exported first if asked); rows still needed stay."""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake.cli import main
from keybrake.core.ledger import LedgerEntry
from keybrake.core.timefmt import DAY_MS
from keybrake.core.windows import Window
from keybrake.jobs.retention import purge, purge_all
from keybrake.store import open_store
from keybrake.store.base import AuditRow, BudgetRecord, CapSpec, Delivery, KeyRecord, Settlement, Store
from keybrake.store.ids import new_audit_id
from keybrake.store.sql_retention import MAX_WINDOW_MS, OBJECT_LIFETIME_MS
from tests import harness
from tests.store.contract import Clock, key

NOW = 1_800_000_000_000


def _row(ts: int, verdict: str = "allowed", key_id: str = "vk_gone") -> AuditRow:
    """A row of key `key_id` (by default one no longer in the store: purged with its key)."""
    return AuditRow(id=new_audit_id(ts), ts=ts, method="GET", path="/v1/balance", verdict=verdict, key_id=key_id)


async def test_purge_deletes_old_rows_in_batches_and_exports_them_first(tmp_path: Path) -> None:
    clock = Clock(NOW - 100 * DAY_MS)
    store = open_store(harness.DATABASE_URL, tmp_path, migrate=False, clock=clock)
    await store.insert_key(key(store), "h1")
    old = [_row(NOW - (100 - i) * DAY_MS + i) for i in range(25)]  # 100 to 76 days old
    for r in old:
        await store.insert_audit(r)
    # a kept reservation (a pending estimate) from 95 days ago must survive
    kept = _row(NOW - 95 * DAY_MS + 7, key_id="vk_1")
    # and so must an old row of a key still in the store (budget seeding counts it)
    live = _row(NOW - 99 * DAY_MS + 3, key_id="vk_1")
    await store.insert_audit(live)
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
    for r in (*old[10:], kept, recent, live):
        assert await store.get_audit(r.id) is not None
    assert await purge(store, 0, None) == 0  # 0 = keep forever
    await store.close()


def test_purge_cli(tmp_path: Path) -> None:
    from tests.harness import KeybrakeThread

    with KeybrakeThread(tmp_path / "d"):
        pass
    runner = CliRunner()
    off = runner.invoke(main, ["audit", "purge", "--older-than-days", "0", "--data-dir", str(tmp_path / "d")])
    # Retention off is not a failure for a cron job: exit 0, saying so (docs/operations.md).
    assert off.exit_code == 0 and off.output.startswith("retention is off (0 days): no audit rows purged")
    bad = runner.invoke(main, ["audit", "purge", "--older-than-days", "-1", "--data-dir", str(tmp_path / "d")])
    assert bad.exit_code == 2 and "--older-than-days" in bad.output
    for short in ("1", "34"):  # shorter than a month in any zone + margin: budgets could not seed
        bad = runner.invoke(main, ["audit", "purge", "--older-than-days", short, "--data-dir", str(tmp_path / "d")])
        assert bad.exit_code != 0 and "--older-than-days must be 0" in bad.output and "at least 35" in bad.output
    ok = runner.invoke(main, ["audit", "purge", "--older-than-days", "35", "--data-dir", str(tmp_path / "d")])
    assert ok.exit_code == 0 and "deleted 0 audit rows older than 35 days" in ok.output
    # The summary names every table docs/operations.md's retention table bounds.
    for words in ("audit rows", "counters", "ledger objects", "ledger_counts", "alert deliveries", "keys",
                  "alert fire-once marks", "dedup entries", "key issuances"):  # fmt: skip
        assert words in ok.output, words


def test_retention_setting_shorter_than_35_days_is_refused_naming_it() -> None:
    import pytest

    from keybrake.config import SettingsError, from_env

    for days in ("1", "34"):
        with pytest.raises(SettingsError, match=r"KEYBRAKE_AUDIT_RETENTION_DAYS must be 0 .* at least 35"):
            from_env({"KEYBRAKE_AUDIT_RETENTION_DAYS": days})
    assert from_env({"KEYBRAKE_AUDIT_RETENTION_DAYS": "0"}).audit_retention_days == 0
    assert from_env({"KEYBRAKE_AUDIT_RETENTION_DAYS": "35"}).audit_retention_days == 35


async def test_purge_all_counts_every_table_and_forgets_day_old_issuances(tmp_path: Path) -> None:
    from keybrake.jobs.retention import TABLES

    clock = Clock(NOW)
    store = open_store(harness.DATABASE_URL, tmp_path, migrate=False, clock=clock)
    assert await store.issuance_put("adm_1", "k-old", "h", b"x")
    clock.ms += 24 * 3_600_000 + 1
    counts = await purge_all(store, 0, None)
    assert set(counts) == set(TABLES) and counts["issuances"] == 1 and counts["audit"] == 0
    assert await store.issuance_get("adm_1", "k-old", 0) is None
    await store.close()


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
    # vk_1 is still live: its audit rows stay (a budget created later seeds its total from them);
    # they go once the key expired before the cutoff (test_purge_deletes_old_rows_in_batches...).
    assert counts["audit"] == 0 and counts["ledger"] == 10 and counts["alert_outbox"] == 20
    assert counts["counters"] == 40  # 20 daily and 20 hourly request counters
    assert await _count(store, "SELECT count(*) FROM audit") == 21
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


_EVENT = st.tuples(
    st.integers(0, 119),  # day (0 = 120 days before "now")
    st.integers(0, 23),  # hour
    st.sampled_from(["charge_a", "charge_a", "kept_a", "charge_b", "object", "delivered", "failed", "pending"]),
)


TOTAL_CAP = 10**12  # µUSD: the generated key a's total cap, never reached by its charges


@dataclass
class _Traffic:
    """One example's generated traffic: keys a (live) and b (expiring after `b_life` days) on
    credential `cred`, the audit rows charged (and whether each kept its reservation), the ledger
    objects touched (id → last touch, ms), the alert deliveries queued (id, created ms, state)."""

    e: int
    now: int
    a: KeyRecord
    b: KeyRecord
    cred: str
    rows: list[tuple[AuditRow, bool]] = field(default_factory=list)
    objects: dict[str, int] = field(default_factory=dict)
    outbox: list[tuple[str, int, str]] = field(default_factory=list)
    spent_a: int = 0


async def _generate_traffic(
    store: Store, clock: Clock, e: int, events: list[tuple[int, int, str]], b_life: int
) -> _Traffic:
    """Example `e`'s keys and events over 120 simulated days, each later than the last example's."""
    base = NOW + e * 400 * DAY_MS  # every example later than the last: their rows never mix
    now = base + 120 * DAY_MS
    a, b, cred, dest = f"vk_a{e}", f"vk_b{e}", f"cred{e}", f"alr_{e}"
    clock.ms = base
    ka = KeyRecord(a, "stripe", cred, f"t:a{e}:", {}, {}, 1, "active", base, now + DAY_MS, None, None, None)
    kb_ = KeyRecord(b, "stripe", cred, "t:b", {}, {}, 1, "active", base, base + b_life * DAY_MS,
                    None, None, None)  # fmt: skip
    await store.insert_key(ka, f"ha{e}")
    await store.insert_key(kb_, f"hb{e}")
    t = _Traffic(e, now, ka, kb_, cred)
    for i, (day, hour, kind) in enumerate(sorted(events)):
        clock.ms = base + day * DAY_MS + hour * 3_600_000 + i  # strictly increasing
        if kind in ("charge_a", "kept_a"):
            amount = 1_000 * (i + 1)
            t.rows.append((await _charge(store, a, amount, keep=kind == "kept_a", total=TOTAL_CAP), kind == "kept_a"))
            t.spent_a += amount
        elif kind == "charge_b" and clock.ms < kb_.expires_at:
            t.rows.append((await _charge(store, b, 500), False))
        elif kind == "object":
            oid = f"ch_{e}_{day % 5}"  # the same object touched again moves its updated_at
            await store.ledger_put(cred, [LedgerEntry(oid, "charge", None, None, "usd", 100)])
            t.objects[oid] = clock.ms
        elif kind in ("delivered", "failed", "pending"):
            await store.enqueue([_delivery(i, dest, clock.ms, kind)], None)
            t.outbox.append((f"dlv_{dest}_{i}", clock.ms, kind))
    clock.ms = now
    return t


async def _key_counters(store: Store, t: _Traffic) -> dict[tuple[str, str, int], tuple[int, int]]:
    """(scope, cap, window start) → (used, reserved) of every counter row of keys a and b."""
    return {
        (r[0], r[1], int(r[2])): (int(r[3]), int(r[4]))
        for s in (f"key:{t.a.id}", f"key:{t.b.id}")
        for r in await store._run(  # type: ignore[attr-defined]
            lambda s=s: store._read(  # type: ignore[attr-defined]
                "SELECT scope, cap, window_start, used, reserved FROM counters WHERE scope = ?", (s,)
            )
        )
    }


async def _check_rows_and_keys(store: Store, t: _Traffic, cutoff: int) -> bool:
    """Only expired key b's rows older than `cutoff` go, with b, when none kept a reservation;
    returns whether b is gone."""
    b_kept = any(keep for r, keep in t.rows if r.key_id == t.b.id)
    b_gone = t.b.expires_at < cutoff and not b_kept
    for r, keep in t.rows:
        # a live key's rows stay whatever their age: budget seeding needs them
        gone = r.ts < cutoff and not keep and r.key_id == t.b.id and b_gone
        assert (await store.get_audit(r.id) is None) == gone, (r, keep, cutoff)
    assert (await store.get_key(t.b.id) is None) == b_gone
    assert await store.get_key(t.a.id) is not None
    return b_gone


async def _check_counters(
    store: Store,
    t: _Traffic,
    before: dict[tuple[str, str, int], tuple[int, int]],
    cutoff: int,
    b_gone: bool,
) -> None:
    """Counters of windows ended before the cutoff (none holding a kept reservation) and those of
    a purged key b are gone; every other counter is unchanged."""
    kept_counters = {(it.counter_scope, it.counter, it.window_start) for r, keep in t.rows if keep
                     for it in _items(r, t.a.id, TOTAL_CAP)}  # fmt: skip
    for (scope, cap, ws), value in before.items():
        ended = 0 < ws < cutoff - MAX_WINDOW_MS and (scope, cap, ws) not in kept_counters
        gone = ended or (scope == f"key:{t.b.id}" and b_gone)
        got = await store.counters_for(scope, [(cap, ws)])
        if gone:
            assert (got[cap].used, got[cap].reserved) == (0, 0), (scope, cap, ws)
            assert await _count(
                store, "SELECT count(*) FROM counters WHERE scope = ? AND cap = ? AND window_start = ?",
                scope, cap, ws,
            ) == 0  # fmt: skip
        else:
            assert (got[cap].used, got[cap].reserved) == value, (scope, cap, ws)


async def _check_objects_and_outbox(store: Store, t: _Traffic, cutoff: int) -> None:
    """Ledger objects untouched for their lifetime (and older than the cutoff) go; deliveries
    older than the cutoff go unless still pending."""
    for oid, touched in t.objects.items():
        gone = touched < min(cutoff, t.now - OBJECT_LIFETIME_MS)
        assert (await store.ledger_get(t.cred, [oid]) == {}) == gone, (oid, touched)
    for did, created, state in t.outbox:
        gone = created < cutoff and state != "pending"
        n = await _count(store, "SELECT count(*) FROM alert_outbox WHERE id = ?", did)
        assert n == (0 if gone else 1), (did, created, state)


async def _check_live_caps(store: Store, t: _Traffic) -> None:
    """Key a's total cap refuses as before, and a budget created now starts at all a spent."""
    a = t.a.id
    # The live total cap refuses exactly as before: one µUSD over what is left.
    left = TOTAL_CAP - t.spent_a
    over = await store.reserve(a, 1, _caps(a, left + 1, TOTAL_CAP), _probe(a, t.now), "me")
    assert over.cap_hit is not None and over.cap_hit.name == "total_usd_cap"
    # A total budget created after the purge starts at everything the live key spent.
    bud = BudgetRecord(
        f"bud_r{t.e}", "r", "label_prefix", f"t:a{t.e}:", None, None, TOTAL_CAP, None, "UTC", t.now, t.now
    )
    await store.insert_budget(bud)
    got_b = await store.counters_for(f"budget:{bud.id}", [("total_usd", 0)])
    assert got_b["total_usd"].used + got_b["total_usd"].reserved == t.spent_a  # held rows as reserved


async def _purge_example(
    store: Store, clock: Clock, e: int, events: list[tuple[int, int, str]], days: int, b_life: int
) -> None:
    """Example `e`: generate its traffic, purge with retention `days`, check what went and stayed."""
    t = await _generate_traffic(store, clock, e, events, b_life)
    before = await _key_counters(store, t)
    await purge_all(store, days, None, batch=3)
    cutoff = t.now - days * DAY_MS
    b_gone = await _check_rows_and_keys(store, t, cutoff)
    await _check_counters(store, t, before, cutoff, b_gone)
    await _check_objects_and_outbox(store, t, cutoff)
    await _check_live_caps(store, t)


def test_generated_traffic_then_purge_keeps_exactly_what_is_live(tmp_path: Path) -> None:
    """Random traffic over simulated days (an injected clock), then retention of R days: exactly
    the rows older than the cutoff that no live window, kept reservation or pending delivery
    needs are gone; every remaining counter is unchanged and the live caps refuse the same."""
    clock = Clock(NOW)
    store = open_store(harness.DATABASE_URL, tmp_path, migrate=False, clock=clock)
    seq = [0]

    @settings(max_examples=harness.examples(40), deadline=None, suppress_health_check=list(HealthCheck))
    @given(st.lists(_EVENT, max_size=25), st.integers(35, 110), st.integers(1, 110))
    def check(events: list[tuple[int, int, str]], days: int, b_life: int) -> None:
        seq[0] += 1
        asyncio.run(_purge_example(store, clock, seq[0], events, days, b_life))

    try:
        check()

    finally:
        asyncio.run(store.close())


def _items(r: AuditRow, key_id: str, total: int) -> list[Any]:
    from keybrake.core.windows import window_start
    from keybrake.store.base import ReservedItem

    out = []
    for cap in _caps(key_id, 0, total):
        out.append(ReservedItem(f"key:{key_id}", cap.counter, window_start(cap.window, r.ts), 0, cap.is_usd))
    return out


def _probe(key_id: str, now: int) -> AuditRow:
    return AuditRow(id=new_audit_id(now), ts=now, method="POST", path="/v1/charges", verdict="in_flight", key_id=key_id)
