"""Alerts: events go into a durable outbox in the store; a background worker delivers them.

Nothing here runs on a proxied request's path: cap thresholds are found by scanning the
counters, cap hits and revocations only enqueue from a task scheduled off the response. The
outbox survives restarts; failed deliveries are retried with exponential backoff.

Webhook bodies are `{"id": "evt_…", "type", "created_at", "data"}`, signed in
`X-Keybrake-Signature: t=<unix>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>` (receivers reject
old `t` to stop replays). Slack destinations get an incoming-webhook `{"text": …}` message.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import logging
import secrets
import time
from typing import Any

from keybrake.config import Settings
from keybrake.core.upstream_url import url_refusal
from keybrake.crypto import Sealer
from keybrake.errors import CapHit, EnforcementUnavailable
from keybrake.logs import event, redact
from keybrake.money import format_usd
from keybrake.proxy.render import dumps
from keybrake.proxy.upstream import Upstream, UpstreamRequest
from keybrake.store.base import AlertDestination, CounterUsage, Delivery, KeyRecord, Store, Window
from keybrake.store.ids import new_audit_id
from keybrake.store.windows import resets_at, window_start
from keybrake.timefmt import rfc3339

log = logging.getLogger("keybrake.alerts")

EVENTS = (
    "cap.threshold",
    "cap.hit",
    "key.revoked",
    "key.expired",
    "spend.anomaly",
    "credential.rejected",
    "secret.exposed",
    "enforcement.unavailable",
    "enforcement.recovered",
)
ANOMALY_MIN_REQUESTS = 5  # an hour with fewer requests is never called a spike
ANOMALY_MIN_HOURS = 3  # a baseline needs this many hours of history
UNAVAILABLE_EVERY_MS = 5 * 60_000
DEFAULT_THRESHOLDS = (50, 80, 100)
MAX_ATTEMPTS = 12
_WINDOWS = {
    "daily_usd": Window.DAY,
    "daily_sends": Window.DAY,
    "daily_requests": Window.DAY,
    "monthly_usd": Window.MONTH,
    "hourly_requests": Window.HOUR,
    "total_usd": Window.TOTAL,
}
_CAP_NAMES = {
    ("key", "daily_usd"): "daily_usd_cap",
    ("key", "total_usd"): "total_usd_cap",
    ("key", "hourly_requests"): "max_requests_per_hour",
    ("key", "daily_sends"): "daily_send_cap",
    ("budget", "daily_usd"): "daily_usd_cap",
    ("budget", "monthly_usd"): "monthly_usd_cap",
    ("budget", "total_usd"): "total_usd_cap",
    ("budget", "daily_requests"): "daily_request_cap",
}


def alert_url_refusal(url: str, settings: Settings) -> str | None:
    """Why an alert may not be delivered to `url` under `settings` (a sentence), or None.

    The vendor-credential rules without the vendor host list, a query string allowed: https, or
    plain http to loopback with KEYBRAKE_ALLOW_INSECURE_UPSTREAM=1. Checked when a destination
    is written and again before every delivery.
    """
    return url_refusal(
        url,
        allowed_hosts=None,
        listed_hosts=settings.upstream_hosts,
        allow_insecure=settings.allow_insecure_upstream,
        what="url",
        allow_query=True,
    )


def sign(secret: bytes, body: bytes, t: int) -> str:
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def new_event_id(now_ms: int) -> str:
    return "evt_" + new_audit_id(now_ms)[4:]


class Alerts:
    def __init__(self, store: Store, sealer: Sealer, upstream: Upstream, settings: Settings) -> None:
        self.store, self.sealer, self.upstream, self.settings = store, sealer, upstream, settings
        self._tasks: set[asyncio.Task[None]] = set()
        self._known: list[AlertDestination] = []  # for enforcement.unavailable, when the store is down
        self._unavailable_sent: dict[str, float] = {}
        self._down = False
        self._expired_checked_ms: int | None = None
        self._last_anomaly_scan = 0.0

    # -- producing events (never on the request path) ----------------------------------------

    def soon(self, coro: Any) -> None:
        """Run an enqueue off the response path; a failure is logged, never raised."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            event(log, "could not queue an alert", logging.ERROR, error=repr(task.exception()))

    async def emit(self, event_type: str, data: dict[str, Any], *, fire_key: str | None = None) -> int:
        """Queue one event for every destination subscribed to it; returns how many were queued."""
        queued = 0
        try:
            for dest in await self.store.list_alerts():
                if event_type in dest.events:
                    key = f"{fire_key}:{dest.id}" if fire_key else None
                    queued += await self._emit_one(dest, event_type, data, key)
        except EnforcementUnavailable as exc:
            event(log, "could not queue an alert", logging.ERROR, alert=event_type, error=str(exc))
        return queued

    def cap_hit(self, cap: CapHit, key_id: str | None) -> None:
        data = {**cap.as_json(), "key_id": key_id}
        self.soon(self.emit("cap.hit", data, fire_key=f"hit:{cap.scope}:{cap.id}:{cap.name}:{cap.resets_at_ms}"))

    def key_revoked(self, key: KeyRecord) -> None:
        data = {"key_id": key.id, "label": key.label, "vendor": key.vendor, "reason": key.revoke_reason}
        self.soon(self.emit("key.revoked", data))

    def credential_rejected(self, credential: str, vendor: str, key_id: str | None) -> None:
        hour = self.store.now_ms() // 3_600_000
        data = {"credential": credential, "vendor": vendor, "key_id": key_id}
        self.soon(self.emit("credential.rejected", data, fire_key=f"rejected:{credential}:{hour}"))

    def secret_exposed(self, prefix: str, client: str) -> None:
        bucket = self.store.now_ms() // UNAVAILABLE_EVERY_MS
        data = {"secret_prefix": prefix, "client": client}
        self.soon(self.emit("secret.exposed", data, fire_key=f"exposed:{prefix}:{client}:{bucket}"))

    def enforcement_unavailable(self, error: str) -> None:
        """Sent from memory, best-effort, at most once per 5 minutes per destination (the store is down)."""
        self._down = True
        now = time.monotonic() * 1000
        for dest in self._known:
            if "enforcement.unavailable" not in dest.events:
                continue
            if now - self._unavailable_sent.get(dest.id, -UNAVAILABLE_EVERY_MS) < UNAVAILABLE_EVERY_MS:
                continue
            self._unavailable_sent[dest.id] = now
            wall = int(time.time() * 1000)
            evt = new_event_id(wall)
            doc = {"id": evt, "type": "enforcement.unavailable", "created_at": rfc3339(wall),
                   "data": {"error": redact(error)[:300]}}  # fmt: skip
            body = dumps(_slack(doc) if dest.type == "slack" else doc).decode()
            d = Delivery("dlv_" + secrets.token_hex(10), evt, dest.id, "enforcement.unavailable", body, wall, wall)
            self.soon(self._send_direct(dest, d))

    async def _send_direct(self, dest: AlertDestination, d: Delivery) -> None:
        refusal = alert_url_refusal(dest.url, self.settings)
        if refusal is not None:
            event(log, "enforcement.unavailable alert not delivered", logging.WARNING, alert=dest.id, error=refusal)
            return
        try:
            await self.upstream.send(UpstreamRequest("POST", dest.url, self._headers(dest, d), d.body.encode()))
        except Exception as exc:  # best effort: the store is down, there is no outbox
            event(log, "enforcement.unavailable alert not delivered", logging.WARNING, error=type(exc).__name__)

    async def scan_expired(self) -> int:
        now = self.store.now_ms()
        since = self._expired_checked_ms if self._expired_checked_ms is not None else now - 3_600_000
        queued = 0
        for key in await self.store.keys_expired_between(since, now):
            data = {"key_id": key.id, "label": key.label, "vendor": key.vendor, "expired_at": rfc3339(key.expires_at)}
            queued += await self.emit("key.expired", data, fire_key=f"expired:{key.id}")
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
        subjects: dict[tuple[str, str], dict[int, list[int]]] = {}
        for key_id, label, h, cost, reqs in rows:
            names = [("key", key_id)]
            if label and ":" in label:
                names.append(("label_prefix", label.split(":", 1)[0] + ":"))
            for name in names:
                acc = subjects.setdefault(name, {}).setdefault(h, [0, 0])
                acc[0] += cost
                acc[1] += reqs
        queued = 0
        for (kind, subject), hours in subjects.items():
            cost_now, reqs_now = hours.get(hour, [0, 0])
            past = [h for h in hours if h < hour]
            if reqs_now < ANOMALY_MIN_REQUESTS or not past:
                continue
            # The baseline is the average hour since the subject's first traffic in the window (a
            # new key is not compared with hours before it existed), over at least 3 hours.
            observed = (hour - min(past)) // 3_600_000
            if observed < ANOMALY_MIN_HOURS:
                continue
            base_cost = sum(hours[h][0] for h in past) / observed
            base_reqs = sum(hours[h][1] for h in past) / observed
            for dest in dests:
                k = float(dest.anomaly_factor)
                over = [
                    m
                    for m, v, b in (("spend", cost_now, base_cost), ("requests", reqs_now, base_reqs))
                    if b and v > k * b
                ]
                if not over:
                    continue
                data = {
                    "scope": kind,
                    "id": subject,
                    "metrics": over,
                    "hour_start": rfc3339(hour),
                    "spend_usd": format_usd(cost_now),
                    "baseline_spend_usd": format_usd(int(base_cost)),
                    "requests": reqs_now,
                    "baseline_requests": round(base_reqs, 2),
                    "factor": k,
                }
                queued += await self._emit_one(
                    dest, "spend.anomaly", data, f"anomaly:{kind}:{subject}:{hour}:{dest.id}"
                )
        return queued

    async def scan_thresholds(self) -> int:
        """Queue cap.threshold for every cap whose current window crossed a subscribed percentage."""
        dests = [d for d in await self.store.list_alerts() if "cap.threshold" in d.events]
        if not dests:
            return 0
        lowest = min(min(d.thresholds or DEFAULT_THRESHOLDS) for d in dests)
        now = self.store.now_ms()
        queued = 0
        # Only windows that can still be current: a month at most (total caps have no window).
        for c in await self.store.counters_near_caps(lowest, now - 32 * 86_400_000):
            kind, _, scope_id = c.scope.partition(":")
            window = _WINDOWS.get(c.counter)
            name = _CAP_NAMES.get((kind, c.counter))
            if window is None or name is None:
                continue
            tz = "UTC"
            if kind == "budget":
                budget = await self.store.get_budget(scope_id)
                if budget is None:
                    continue
                tz = budget.timezone
            if window_start(window, now, tz) != c.window_start:
                continue  # an earlier window: not news any more
            pct_used = (c.used + c.reserved) * 100 / c.limit
            for dest in dests:
                for pct in dest.thresholds or DEFAULT_THRESHOLDS:
                    if pct_used < pct:
                        continue
                    data = _threshold_data(c, kind, scope_id, name, pct, window, tz)
                    key = f"threshold:{c.scope}:{c.counter}:{c.window_start}:{pct}:{dest.id}"
                    queued += await self._emit_one(dest, "cap.threshold", data, key)
        return queued

    async def _emit_one(
        self, dest: AlertDestination, event_type: str, data: dict[str, Any], fire_key: str | None
    ) -> int:
        now = self.store.now_ms()
        evt = new_event_id(now)
        doc = {"id": evt, "type": event_type, "created_at": rfc3339(now), "data": data}
        body = dumps(_slack(doc) if dest.type == "slack" else doc).decode()
        d = Delivery("dlv_" + secrets.token_hex(10), evt, dest.id, event_type, body, now, now)
        return int(await self.store.enqueue([d], fire_key))

    # -- delivering ------------------------------------------------------------------------

    async def deliver_due(self) -> int:
        now = self.store.now_ms()
        dests = {d.id: d for d in await self.store.list_alerts()}
        done = 0
        for d in await self.store.due_deliveries(now, 50):
            dest = dests.get(d.destination_id)
            if dest is None:
                await self.store.finish_delivery(_replace(d, state="failed", last_error="destination deleted"))
                continue
            done += await self._attempt(dest, d)
        return done

    async def _attempt(self, dest: AlertDestination, d: Delivery) -> int:
        body = d.body.encode()
        headers = self._headers(dest, d)
        status: int | None = None
        error: str | None = None
        refusal = alert_url_refusal(dest.url, self.settings)
        if refusal is not None:
            # Accepted under other settings, refused by this process's: nothing is sent.
            error = f"refused by the current settings: {refusal}"
        else:
            try:
                resp = await self.upstream.send(UpstreamRequest("POST", dest.url, headers, body))
                status = resp.status
                if not 200 <= resp.status < 300:
                    error = redact(resp.body[:300].decode("utf-8", "replace"))
            except Exception as exc:  # any failure: retried with backoff
                error = f"{type(exc).__name__}: {redact(str(exc))[:200]}"
        attempts = d.attempts + 1
        now = self.store.now_ms()
        if error is None:
            await self.store.finish_delivery(_replace(d, state="delivered", attempts=attempts, last_status=status,
                                                      last_error=None, delivered_at=now))  # fmt: skip
            return 1
        backoff_ms = int(self.settings.alert_retry_base_s * 1000 * 2 ** min(attempts - 1, 10))
        state = "failed" if attempts >= MAX_ATTEMPTS else "pending"
        await self.store.finish_delivery(
            _replace(d, state=state, attempts=attempts, last_status=status, last_error=error,
                     next_attempt_at=now + min(backoff_ms, 3_600_000))
        )  # fmt: skip
        event(log, "alert delivery failed", logging.WARNING, delivery=d.id, attempts=attempts, status=status)
        return 0

    def _headers(self, dest: AlertDestination, d: Delivery) -> list[tuple[str, str]]:
        secret = self.sealer.open(dest.secret_enc, f"alert:{dest.id}")
        return [
            ("content-type", "application/json"),
            ("user-agent", "keybrake-alerts"),
            ("x-keybrake-signature", sign(secret, d.body.encode(), int(time.time()))),
            ("x-keybrake-event-id", d.event_id),
        ]

    async def run_forever(self) -> None:
        last_scan = 0.0
        while True:
            try:
                if time.monotonic() - last_scan >= self.settings.alert_interval_s:
                    last_scan = time.monotonic()
                    self._known = await self.store.list_alerts()
                    if self._down:
                        # Recovered only when what failed works again: a write on the counters
                        # (a read can succeed while reservations still cannot).
                        await self.store.probe_write()
                        await self.emit("enforcement.recovered", {"recovered_at": rfc3339(self.store.now_ms())})
                        self._down = False
                    await self.scan_thresholds()
                    await self.scan_expired()
                    if time.monotonic() - self._last_anomaly_scan >= 6 * self.settings.alert_interval_s:
                        self._last_anomaly_scan = time.monotonic()
                        await self.scan_anomalies()
                await self.deliver_due()
            except EnforcementUnavailable as exc:
                event(log, "alert pass failed", logging.ERROR, error=str(exc))
            await asyncio.sleep(min(1.0, self.settings.alert_interval_s))


def _replace(d: Delivery, **kw: Any) -> Delivery:
    return Delivery(**{**d.__dict__, **kw})


def _threshold_data(
    c: CounterUsage, kind: str, scope_id: str, name: str, pct: int, window: Window, tz: str
) -> dict[str, Any]:
    money = c.counter.endswith("_usd")
    reset = resets_at(window, c.window_start, tz)
    return {
        "scope": kind,
        "id": scope_id,
        "cap": name,
        "threshold_pct": pct,
        "limit": format_usd(c.limit) if money else c.limit,
        "used": format_usd(c.used + c.reserved) if money else c.used + c.reserved,
        "unit": "usd" if money else "count",
        "window_start": rfc3339(c.window_start) if window is not Window.TOTAL else None,
        "resets_at": rfc3339(reset) if reset is not None else None,
    }


def _slack(doc: dict[str, Any]) -> dict[str, Any]:
    data = doc["data"]
    if doc["type"] == "cap.threshold":
        text = (
            f":warning: Keybrake: {data['scope']} {data['id']} reached {data['threshold_pct']}% of its "
            f"{data['cap']} ({data['used']} of {data['limit']}{' USD' if data['unit'] == 'usd' else ''})"
        )
    elif doc["type"] == "cap.hit":
        text = f":no_entry: Keybrake: a request was refused by {data['scope']} {data['id']} {data['name']}"
    elif doc["type"] in ("key.revoked", "key.expired"):
        what = "was revoked" if doc["type"] == "key.revoked" else "expired"
        text = f":lock: Keybrake: vault key {data['key_id']} ({data.get('label') or 'no label'}) {what}"
    elif doc["type"] == "spend.anomaly":
        text = (
            f":chart_with_upwards_trend: Keybrake: {data['scope']} {data['id']} spent {data['spend_usd']} USD in "
            f"{data['requests']} requests this hour, over {data['factor']}× its usual hour"
        )
    else:
        text = f"Keybrake: {doc['type']}"
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
