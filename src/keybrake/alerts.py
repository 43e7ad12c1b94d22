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
# Events this version produces; subscribing to the others is accepted (they come later).
PRODUCED = frozenset({"cap.threshold", "cap.hit", "key.revoked"})
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


def sign(secret: bytes, body: bytes, t: int) -> str:
    mac = hmac.new(secret, f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


def new_event_id(now_ms: int) -> str:
    return "evt_" + new_audit_id(now_ms)[4:]


class Alerts:
    def __init__(self, store: Store, sealer: Sealer, upstream: Upstream, settings: Settings) -> None:
        self.store, self.sealer, self.upstream, self.settings = store, sealer, upstream, settings
        self._tasks: set[asyncio.Task[None]] = set()

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

    async def scan_thresholds(self) -> int:
        """Queue cap.threshold for every cap whose current window crossed a subscribed percentage."""
        dests = [d for d in await self.store.list_alerts() if "cap.threshold" in d.events]
        if not dests:
            return 0
        lowest = min(min(d.thresholds or DEFAULT_THRESHOLDS) for d in dests)
        now = self.store.now_ms()
        queued = 0
        for c in await self.store.counters_near_caps(lowest):
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
        headers = [("content-type", "application/json"), ("user-agent", "keybrake-alerts")]
        secret = self.sealer.open(dest.secret_enc, f"alert:{dest.id}")
        headers.append(("x-keybrake-signature", sign(secret, body, int(time.time()))))
        headers.append(("x-keybrake-event-id", d.event_id))
        status: int | None = None
        error: str | None = None
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

    async def run_forever(self) -> None:
        last_scan = 0.0
        while True:
            try:
                if time.monotonic() - last_scan >= self.settings.alert_interval_s:
                    last_scan = time.monotonic()
                    await self.scan_thresholds()
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
    elif doc["type"] == "key.revoked":
        text = f":lock: Keybrake: vault key {data['key_id']} ({data.get('label') or 'no label'}) was revoked"
    else:
        text = f"Keybrake: {doc['type']}"
    return {"text": text, "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": text}}]}
