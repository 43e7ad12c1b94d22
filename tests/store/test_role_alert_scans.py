"""The alert scans' role (`AlertScanStore`, jobs/alerts.py): counters near their caps, keys that
expired or were revoked in a window, hourly totals; on every engine."""

from __future__ import annotations

from dataclasses import replace

from keybrake.core.timefmt import DAY_MS
from keybrake.store.base import AlertDestination, AlertScanStore, Store
from tests.store.contract import Clock, caps, key, row


async def test_the_anomaly_scans_hourly_totals_run_as_a_report(
    store: Store, clock: Clock, alert_scans: AlertScanStore
) -> None:
    """Red team: `hourly_totals` (25 hours of audit rows grouped) ran on the store's main
    connection — on SQLite inline on the event loop — and stalled the proxy ~1 s at 1M rows.
    It is a report: off the event loop, on the report connections, under the report timeout."""
    from typing import Any

    inner: Any = getattr(store, "inner", store)
    reports: list[Any] = []
    run_report = inner._run_report

    async def spy(fn: Any) -> Any:
        reports.append(fn)
        return await run_report(fn)

    inner._run_report = spy
    assert await alert_scans.hourly_totals(clock.ms - 24 * 3_600_000, clock.ms + 1) == []
    assert len(reports) == 1


async def test_alert_scans_see_only_windows_that_can_still_be_current(
    store: Store, clock: Clock, alert_scans: AlertScanStore
) -> None:
    await store.insert_key(key(store), "h1")
    res = await store.reserve("vk_1", 1, caps("vk_1", 9, 10, total=10), row(store), "me")
    assert res.cap_hit is None
    near = await alert_scans.counters_near_caps(50, clock.ms - 32 * DAY_MS)
    assert {(c.counter, c.used + c.reserved, c.limit) for c in near} == {("daily_usd", 9, 10), ("total_usd", 9, 10)}
    clock.ms += 40 * DAY_MS
    later = await alert_scans.counters_near_caps(50, clock.ms - 32 * DAY_MS)
    assert {c.counter for c in later} == {"total_usd"}  # the old day is not news any more
    assert await alert_scans.enqueue([], "mark-1") and not await alert_scans.enqueue([], "mark-1")
    clock.ms += 41 * DAY_MS
    assert await store.purge_fired(clock.ms - 40 * DAY_MS) == 1
    assert await alert_scans.enqueue([], "mark-1")


async def test_keys_that_expired_or_were_revoked_in_a_window(
    store: Store, clock: Clock, alert_scans: AlertScanStore
) -> None:
    """(since, until]: an active key whose expiry passed in it, a key revoked in it; nothing twice."""
    k1, k2, k3 = key(store, "vk_1"), key(store, "vk_2"), key(store, "vk_3")
    for n, k in enumerate((k1, replace(k2, expires_at=clock.ms + 1000), k3)):
        await store.insert_key(k, f"h{n}")
    start = clock.ms
    clock.ms += 500
    await store.revoke_key("vk_3", "test")
    assert [k.id for k in await alert_scans.keys_revoked_between(start, clock.ms)] == ["vk_3"]
    assert await alert_scans.keys_revoked_between(clock.ms, clock.ms + 1000) == []
    assert await alert_scans.keys_expired_between(start, clock.ms) == []
    assert [k.id for k in await alert_scans.keys_expired_between(clock.ms, start + 1000)] == ["vk_2"]
    assert await alert_scans.keys_expired_between(start + 1000, start + DAY_MS) == []
    await store.insert_alert(AlertDestination("alr_1", "webhook", "https://x.test", b"s", ("key.revoked",), (), start))
    assert [d.id for d in await alert_scans.list_alerts()] == ["alr_1"]
