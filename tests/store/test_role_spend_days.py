"""The console's spend per (vendor, label, UTC day) (`AuditStore.spend_days`, folded by
`keybrake.console.spend_days`) against GET /v1/spend's own reads (`AuditStore.spend` folded by
`admin.spend.report`), on every engine: generated audit rows over several days give the same
report by vendor, by day of each vendor and by label segments (hypothesis). And the kept closed
days: read once, shown stale at most until a background read, today always read."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any, cast

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from keybrake.admin.spend import report
from keybrake.console.spend_days import Cell, SpendDays, by_day, by_label, by_vendor
from keybrake.core.timefmt import DAY_MS
from keybrake.runtime import Runtime
from keybrake.store.base import AuditRow, AuditStore, Store
from keybrake.store.ids import new_audit_id
from tests.store.contract import DAY0, Clock

ROW = st.tuples(
    st.integers(0, 4),  # day
    st.integers(0, DAY_MS - 1),  # time of day (ms)
    st.sampled_from(["stripe", "twilio", "resend"]),
    st.sampled_from([None, "a", "a:b", "a:b:c", "a:c", "z:b:c:d"]),
    st.sampled_from(["allowed", "denied_policy", "cap_exceeded", "outcome_unknown"]),
    st.integers(0, 5_000_000),
    st.sampled_from(["charge", "refund", "sms", "none"]),
)
_regions = itertools.count(1)


async def _write(store: Store, start: int, rows: list[tuple[Any, ...]]) -> None:
    for n, (day, at, vendor, label, verdict, cost, kind) in enumerate(rows):
        ts = start + day * DAY_MS + at
        await store.insert_audit(
            AuditRow(id=new_audit_id(ts), ts=ts, method="POST", path=f"/v1/x{n}", verdict=verdict,
                     key_id=f"vk_{n % 3}", label=label, vendor=vendor, cost_usd=cost, cost_kind=kind)
        )  # fmt: skip


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(rows=st.lists(ROW, max_size=25), segments=st.integers(1, 3))
async def test_the_console_cells_fold_to_the_spend_reports(
    store: Store, audit: AuditStore, rows: list[tuple[Any, ...]], segments: int
) -> None:
    start = DAY0 + next(_regions) * 30 * DAY_MS  # each example in a stretch of time of its own
    await _write(store, start, rows)
    since, until = start, start + 5 * DAY_MS
    cells = await audit.spend_days(since, until)
    assert by_vendor(cells) == report(await audit.spend("vendor", since, until, None, None), "vendor", "UTC")
    assert by_label(cells, segments) == report(
        await audit.spend("label", since, until, None, None), f"label:{segments}", "UTC"
    )
    for vendor in ("stripe", "twilio", "resend"):
        assert by_day(cells, vendor) == report(await audit.spend("bucket", since, until, None, vendor), "day", "UTC")
    assert sum(c[5] for c in cells) == len(rows)


def total(cells: list[Cell]) -> int:
    return sum(c[3] for c in cells)


class _Rt:
    def __init__(self, audit: AuditStore) -> None:
        self.audit_store = audit


async def test_closed_days_are_kept_and_refreshed_behind_the_page(
    store: Store, clock: Clock, audit: AuditStore
) -> None:
    rt = cast(Runtime, _Rt(audit))
    mono = [0.0]
    days = SpendDays(ttl_s=300, clock=lambda: mono[0])
    yesterday = DAY0 + 10 * DAY_MS
    clock.ms = yesterday + DAY_MS + 3_600_000  # 01:00 the next day
    await _write(store, yesterday, [(0, 1000, "stripe", "a", "allowed", 1_000_000, "charge")])
    assert total(await days.cells(rt, yesterday)) == 1_000_000
    # a late change to a closed day is not read again while the kept copy is fresh…
    await _write(store, yesterday, [(0, 2000, "stripe", "a", "allowed", 500_000, "charge")])
    # …but today's rows always are
    await _write(store, yesterday + DAY_MS, [(0, 1000, "twilio", None, "allowed", 7, "sms")])
    assert total(await days.cells(rt, yesterday)) == 1_000_007
    mono[0] = 301.0  # past the TTL: this view shows the kept copy and starts one background read
    assert total(await days.cells(rt, yesterday)) == 1_000_007
    for _ in range(100):
        await asyncio.sleep(0.01)
        if total(await days.cells(rt, yesterday)) == 1_500_007:
            break
    assert total(await days.cells(rt, yesterday)) == 1_500_007
    # an earlier range than kept is read at once, with what was kept
    await _write(store, yesterday - DAY_MS, [(0, 5, "resend", None, "allowed", 3, "none")])
    assert total(await days.cells(rt, yesterday - DAY_MS)) == 1_500_010
    # a new day: the kept days are read again (yesterday's cells move to the closed part)
    clock.ms += DAY_MS
    assert total(await days.cells(rt, yesterday - DAY_MS)) == 1_500_010
