"""The alert scans: events found by reading the store, queued into the outbox by `Alerts`.

Every KEYBRAKE_ALERT_INTERVAL s: enforcement.recovered once the store takes writes again, events
held while it was down, cap.threshold (`scan_thresholds`), key.expired (`scan_expired`),
key.revoked (`Alerts.scan_revoked`), and every sixth pass spend.anomaly (`scan_anomalies`).
Between passes, every second, events held in memory are queued as soon as the store answers.
The scans run in their own job and never wait on a delivery (`alert_delivery.Deliverer`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

from keybrake.config import Settings
from keybrake.core.caps import CAPS_BY_COUNTER
from keybrake.core.errors import EnforcementUnavailable
from keybrake.core.timefmt import rfc3339
from keybrake.core.windows import Window
from keybrake.jobs.alert_format import anomaly_data, hourly_baselines, threshold_data
from keybrake.jobs.alerts import DEFAULT_THRESHOLDS, LOOKBACK_MS, Alerts
from keybrake.jobs.base import Job
from keybrake.logs import event
from keybrake.store.base import AlertDestination, AlertScanStore, CounterUsage

log = logging.getLogger("keybrake.jobs.alerts")


class AlertScans(Job):
    """The alert scan job over one `Alerts` (module docstring); its stop lets queued events land."""

    name = "alerts"
    log = logging.getLogger("keybrake.jobs.alerts")
    failure = "alert scan failed"
    first_pass_now = True

    def __init__(self, alerts: Alerts) -> None:
        self.alerts = alerts
        self.store: AlertScanStore = alerts.store
        self.settings: Settings = alerts.settings
        self._last_scan = 0.0
        self._last_anomaly_scan = 0.0
        self._expired_checked_ms: int | None = None

    def delay_s(self) -> float:
        return min(1.0, self.settings.alert_interval_s)

    async def run_once(self) -> int:
        """The scans when KEYBRAKE_ALERT_INTERVAL s have passed since the last, else the held events."""
        if time.monotonic() - self._last_scan >= self.settings.alert_interval_s:
            self._last_scan = time.monotonic()
            return await self.scan_once()
        if self.alerts.holding:
            return await self.alerts.requeue_held()
        return 0

    async def on_stop(self) -> None:
        await self.alerts.drain(timeout_s=1.0)

    async def scan_once(self) -> int:
        """One pass of every scan; returns the events queued. Raises EnforcementUnavailable when the store is down."""
        self.alerts.known = await self.store.list_alerts()
        if self.alerts.down:
            # Recovered only when what failed works again: a write on the counters
            # (a read can succeed while reservations still cannot).
            await self.store.probe_write()
            now = self.store.now_ms()
            await self.alerts.emit(
                "enforcement.recovered", {"recovered_at": rfc3339(now), "instance": self.alerts.instance_id}
            )
            self.alerts.down = False
        queued = await self.alerts.requeue_held()
        queued += await self.scan_thresholds()
        queued += await self.scan_expired()
        queued += await self.alerts.scan_revoked()
        if time.monotonic() - self._last_anomaly_scan >= 6 * self.settings.alert_interval_s:
            self._last_anomaly_scan = time.monotonic()
            try:
                queued += await self.scan_anomalies()
            except EnforcementUnavailable as exc:  # a report past its timeout: the next pass tries again
                event(log, "spend.anomaly scan failed", logging.ERROR, error=str(exc))
        return queued

    async def scan_thresholds(self) -> int:
        """Queue cap.threshold for every cap whose current window crossed a subscribed percentage.

        Once per cap, window and percentage: the mark names the window's start and is kept until
        the window resets (a total cap's forever), so the next day or month fires again. A new
        destination's marks for what had crossed before it existed are written when it is
        created (`seed_threshold_marks`), so it never gets that past as news."""
        dests = [d for d in await self.store.list_alerts() if "cap.threshold" in d.events]
        queued = 0
        for dest, data, key, reset in await threshold_crossings(self.store, dests):
            queued += await self.alerts.queue_one(dest, "cap.threshold", data, key, reset)
        return queued

    async def scan_expired(self) -> int:
        """key.expired for keys that expired since the last scan (24 h back at start), once each."""
        now = self.store.now_ms()
        since = self._expired_checked_ms if self._expired_checked_ms is not None else now - LOOKBACK_MS
        queued = 0
        for key in await self.store.keys_expired_between(since, now):
            data = {"key_id": key.id, "label": key.label, "vendor": key.vendor, "expired_at": rfc3339(key.expires_at)}
            queued += await self.alerts.emit(
                "key.expired", data, fire_key=f"expired:{key.id}", not_before_ms=key.expires_at
            )
        self._expired_checked_ms = now
        return queued

    async def scan_anomalies(self) -> int:
        """spend.anomaly: this hour's spend or requests of a key or label prefix above k × its
        average hour over (up to) the 24 before it, with at least ANOMALY_MIN_REQUESTS requests."""
        dests = [d for d in await self.store.list_alerts() if "spend.anomaly" in d.events]
        if not dests:
            return 0
        now = self.store.now_ms()
        hour = now - now % 3_600_000
        rows = await self.store.hourly_totals(hour - 24 * 3_600_000, now + 1)
        queued = 0
        for kind, subject, cost_now, reqs_now, base_cost, base_reqs in hourly_baselines(rows, hour):
            for dest in dests:
                k = float(dest.anomaly_factor)
                over = [
                    m
                    for m, v, b in (("spend", cost_now, base_cost), ("requests", reqs_now, base_reqs))
                    if b and v > k * b
                ]
                if not over:
                    continue
                data = anomaly_data(kind, subject, over, hour, cost_now, reqs_now, base_cost, base_reqs, k)
                key = f"anomaly:{kind}:{subject}:{hour}:{dest.id}"
                queued += await self.alerts.queue_one(dest, "spend.anomaly", data, key, hour + 3_600_000)
        return queued


Crossing = tuple[AlertDestination, dict[str, Any], str, int | None]


async def threshold_crossings(
    store: AlertScanStore, dests: list[AlertDestination], *, settled_only: bool = False
) -> list[Crossing]:
    """Every (destination, event data, fire-once key, mark kept until (Unix ms; None: forever))
    of a cap at or past one of `dests`' thresholds in its current window, counting spend settled
    and held (reserved), or with `settled_only` settled spend alone. Caps of keys that are
    revoked or expired are left out: their thresholds are not news."""
    if not dests:
        return []
    lowest = min(min(d.thresholds or DEFAULT_THRESHOLDS) for d in dests)
    now = store.now_ms()
    # Only windows that can still be current: a month at most (total caps have no window).
    near: list[tuple[CounterUsage, str, str, Window, str, str]] = []
    for c in await store.counters_near_caps(lowest, now - 32 * 86_400_000, active_at_ms=now):
        kind, _, scope_id = c.scope.partition(":")
        spec = CAPS_BY_COUNTER.get((kind, c.counter))
        if spec is None:
            continue
        tz = "UTC"
        if kind == "budget":
            budget = await store.get_budget(scope_id)
            if budget is None:
                continue
            tz = budget.timezone
        near.append((c, kind, scope_id, spec.window, spec.field, tz))
    # The current windows as reservations compute them (one query on PostgreSQL).
    bounds = await store.window_bounds(now, [(n[3], n[5]) for n in near])
    out: list[Crossing] = []
    for (c, kind, scope_id, window, name, _), (ws, reset) in zip(near, bounds, strict=True):
        if ws != c.window_start:
            continue  # an earlier window: not news any more
        pct_used = (c.used + (0 if settled_only else c.reserved)) * 100 / c.limit
        for dest in dests:
            for pct in dest.thresholds or DEFAULT_THRESHOLDS:
                if pct_used >= pct:
                    data = threshold_data(c, kind, scope_id, name, pct, window, reset)
                    out.append((dest, data, f"threshold:{c.scope}:{c.counter}:{c.window_start}:{pct}:{dest.id}", reset))
    return out


async def seed_threshold_marks(store: AlertScanStore, dest: AlertDestination) -> int:
    """Mark as already sent, for `dest` (about to be created), every threshold crossed before it
    existed, so its first scan sends only what crosses from now on. Returns the marks written.

    Only settled spend counts: a reservation in flight may yet be released (a 4xx), and a mark
    seeded from it would swallow a real crossing of the same threshold later in the window."""
    if "cap.threshold" not in dest.events:
        return 0
    written = 0
    for _, _, key, reset in await threshold_crossings(store, [dest], settled_only=True):
        written += int(await store.enqueue([], key, keep_until_ms=reset, forever=reset is None))
    return written
