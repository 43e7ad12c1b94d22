"""The audit role (`AuditStore`, the admin surface's audit log, export and spend); on every engine.

Rows are written as the proxy writes them (`insert_audit`), an hour apart, then read back by
id, by filters, by time range, page by page, in export windows and as spend totals.
"""

from __future__ import annotations

from keybrake.store.base import SPEND_BUCKET_MS, AuditQuery, AuditRow, AuditStore, SpendRow, Store
from keybrake.store.ids import new_audit_id
from keybrake.store.records import RecentRun, RunTotals
from tests.store.contract import DAY0, Clock

HOUR = 3_600_000
# (key, vendor, verdict, cost µUSD, cost kind): one row per hour from DAY0
ROWS = [
    ("vk_1", "stripe", "allowed", 1_000, "charge"),
    ("vk_1", "stripe", "denied_policy", 0, "none"),
    ("vk_2", "twilio", "allowed", 300, "sms"),
    ("vk_1", "stripe", "allowed", 250, "refund"),
    ("vk_2", "twilio", "cap_exceeded", 0, "none"),
    (None, None, "denied_auth", 0, "none"),
]


async def _write(store: Store, clock: Clock) -> list[str]:
    ids = []
    for n, (key_id, vendor, verdict, cost, kind) in enumerate(ROWS):
        ts = DAY0 + n * HOUR
        row = AuditRow(
            id=new_audit_id(ts),
            ts=ts,
            method="POST",
            path="/v1/x",
            verdict=verdict,
            key_id=key_id,
            label=f"team:{key_id}" if key_id else None,
            vendor=vendor,
            cost_usd=cost,
            cost_kind=kind,
            metadata={"run": str(n % 2)},
            agent_run_id=f"run-{n % 2}" if key_id else None,
        )
        await store.insert_audit(row)
        ids.append(row.id)
    clock.ms = DAY0 + len(ROWS) * HOUR
    return ids


async def test_rows_by_id_filters_time_and_pages(store: Store, clock: Clock, audit: AuditStore) -> None:
    ids = await _write(store, clock)
    got = await audit.get_audit(ids[2])
    assert got is not None and (got["key_id"], got["vendor"], got["cost_usd"]) == ("vk_2", "twilio", 300)
    assert await audit.get_audit("kbr_missing") is None
    assert [r["id"] for r in await audit.query_audit(AuditQuery())] == ids[::-1]  # newest first
    assert await audit.count_audit_between(ids[0], ids[3]) == 3  # (after, through]
    assert await audit.count_audit_between("", ids[-1]) == len(ids)
    assert await audit.count_audit_between(ids[-1], ids[-1]) == 0
    assert [r["id"] for r in await audit.query_audit(AuditQuery(key_id="vk_1"))] == [ids[3], ids[1], ids[0]]
    denied = await audit.query_audit(AuditQuery(verdict="denied"))
    assert [r["id"] for r in denied] == [ids[5], ids[1]]  # every denied_* verdict
    assert [r["id"] for r in await audit.query_audit(AuditQuery(verdict="cap_exceeded"))] == [ids[4]]
    window = AuditQuery(since=DAY0 + HOUR, until=DAY0 + 3 * HOUR)  # since inclusive, until exclusive
    assert [r["id"] for r in await audit.query_audit(window)] == [ids[2], ids[1]]
    assert [r["id"] for r in await audit.query_audit(AuditQuery(metadata={"run": "1"}))] == [ids[5], ids[3], ids[1]]
    page = await audit.query_audit(AuditQuery(limit=2))
    rest = await audit.query_audit(AuditQuery(limit=10, cursor=(page[-1]["ts"], page[-1]["id"])))
    assert [r["id"] for r in page + rest] == ids[::-1]
    oldest = await audit.query_audit(AuditQuery(ascending=True, after_id=ids[1], through_id=ids[3]))
    assert [r["id"] for r in oldest] == ids[2:4]


async def test_an_export_window_ends_after_so_many_rows(store: Store, clock: Clock, audit: AuditStore) -> None:
    """Each export page scans at most `window` rows in id order (other filters do not shorten it)."""
    ids = await _write(store, clock)
    assert await audit.audit_window_end(AuditQuery(), 2) == ids[1]
    assert await audit.audit_window_end(AuditQuery(after_id=ids[1], key_id="vk_2"), 2) == ids[3]
    assert await audit.audit_window_end(AuditQuery(since=DAY0 + 4 * HOUR), 2) == ids[5]
    assert await audit.audit_window_end(AuditQuery(after_id=ids[4]), 2) is None  # fewer rows remain


async def test_console_windows_run_totals_and_recent_runs(store: Store, clock: Clock, audit: AuditStore) -> None:
    """The console's reads: a downward scan window's far end, one run's totals (µUSD, refunds
    apart; `denied` counts denied_* and cap_exceeded), and the runs of the latest rows."""
    ids = await _write(store, clock)
    assert await audit.audit_window_start(AuditQuery(), 2) == (ids[4], DAY0 + 4 * HOUR, ids[3])
    assert await audit.audit_window_start(AuditQuery(cursor=(0, ids[4])), 2) == (ids[2], DAY0 + 2 * HOUR, ids[1])
    assert await audit.audit_window_start(AuditQuery(cursor=(0, ids[2])), 2) == (ids[0], DAY0, None)  # the bottom
    assert await audit.audit_window_start(AuditQuery(cursor=(0, ids[1])), 2) is None  # fewer rows remain
    assert await audit.audit_window_start(AuditQuery(until=DAY0 + 2 * HOUR), 2) == (ids[0], DAY0, None)
    # run-0: rows 0 (allowed 1,000), 2 (allowed 300), 4 (cap_exceeded); run-1: 1 (denied), 3 (refund 250)
    assert await audit.audit_run_totals("run-0") == RunTotals(3, 2, 1, 1_300, 0, DAY0, DAY0 + 4 * HOUR)
    assert await audit.audit_run_totals("run-1") == RunTotals(2, 1, 1, 0, 250, DAY0 + HOUR, DAY0 + 3 * HOUR)
    assert await audit.audit_run_totals("run-none") == RunTotals(0, 0, 0, 0, 0, None, None)
    recent = await audit.recent_runs(10, 5)
    assert recent == [RecentRun("run-0", DAY0 + 4 * HOUR), RecentRun("run-1", DAY0 + 3 * HOUR)]
    assert await audit.recent_runs(2, 5) == [RecentRun("run-0", DAY0 + 4 * HOUR)]  # rows 5 (no run) and 4
    assert await audit.recent_runs(10, 1) == [RecentRun("run-0", DAY0 + 4 * HOUR)]


async def test_spend_groups_refunds_apart(store: Store, clock: Clock, audit: AuditStore) -> None:
    """Totals per group in µUSD: refunds apart from charges; rows without a key are not spend."""
    await _write(store, clock)
    by_key = {r.group: r for r in await audit.spend("key", None, None, None, None)}
    assert by_key == {
        "vk_1": SpendRow("vk_1", 1_000, 250, 3, 1, 0),
        "vk_2": SpendRow("vk_2", 300, 0, 2, 0, 1),
    }
    assert [r.group for r in await audit.spend("vendor", None, None, None, "twilio")] == ["twilio"]
    assert {r.group for r in await audit.spend("label", None, None, "team:vk_1", None)} == {"team:vk_1"}
    late = await audit.spend("bucket", DAY0 + 2 * HOUR, DAY0 + 4 * HOUR, None, None)
    assert sorted((r.group, r.charged, r.refunded) for r in late) == [
        ((DAY0 + 2 * HOUR) // SPEND_BUCKET_MS, 300, 0),
        ((DAY0 + 3 * HOUR) // SPEND_BUCKET_MS, 0, 250),
    ]


async def test_a_row_written_twice_with_one_id_stays_one_row(store: Store, clock: Clock, audit: AuditStore) -> None:
    """`insert_audit` runs again after a lost connection whose COMMIT may have landed: the second
    run with the same id adds nothing and raises nothing (the first row's content stays)."""
    row = AuditRow(id=new_audit_id(clock.ms), ts=clock.ms, method="POST", path="/v1/x", verdict="denied_policy")
    await store.insert_audit(row)
    row.reason = "the second run"
    await store.insert_audit(row)
    got = await audit.query_audit(AuditQuery())
    assert [(r["id"], r["reason"]) for r in got] == [(row.id, None)]


async def test_the_last_call_of_each_key(store: Store, clock: Clock, audit: AuditStore) -> None:
    """`last_calls`: each key's newest row time (ms); a key without rows is absent."""
    await _write(store, clock)
    assert await audit.last_calls(["vk_1", "vk_2", "vk_none"]) == {"vk_1": DAY0 + 3 * HOUR, "vk_2": DAY0 + 4 * HOUR}
    assert await audit.last_calls([]) == {}
