"""Alerts: events go into a durable outbox in the store; `alert_delivery.Deliverer` sends them.

Nothing here runs on a proxied request's path: cap thresholds are found by scanning the
counters, cap hits and revocations only enqueue from a task scheduled off the response. Scans run
in their own job (`alert_scans`) and never wait on deliveries. Every event is queued at most once per
destination: events that can repeat carry a fire-once mark (`alert_fired`), and an event's
deliveries have ids derived from its id, so queueing it again (another replica's scan, a retry
after the store was down) adds nothing. An event raised while the store is down is held in memory
(at most MAX_HELD) and queued when the store answers again.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Any

from keybrake.config import Settings
from keybrake.core.approvals import decision_links
from keybrake.core.errors import CapHit, EnforcementUnavailable
from keybrake.core.upstream import Upstream, UpstreamRequest
from keybrake.crypto import Sealer
from keybrake.jobs.alert_delivery import MAX_ATTEMPTS, Deliverer, alert_url_refusal
from keybrake.jobs.alert_format import (
    approval_data,
    build_delivery,
    event_id_for,
    hit_level,
    new_event_id,
    sign,
)
from keybrake.logs import event, redact
from keybrake.store.base import AlertDestination, AlertScanStore, ApprovalRecord, KeyRecord

__all__ = ["DEFAULT_THRESHOLDS", "EVENTS", "MAX_ATTEMPTS", "Alerts", "alert_url_refusal", "sign"]

log = logging.getLogger("keybrake.jobs.alerts")

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
    "approval.requested",
)
UNAVAILABLE_EVERY_MS = 5 * 60_000
DEFAULT_THRESHOLDS = (50, 80, 100)
EXPOSED_MAX = 20  # secret.exposed events per 5 minutes per replica, all clients together
MAX_HELD = 10_000  # events held in memory while the store is down
LOOKBACK_MS = 24 * 3_600_000  # at start, expiries and revocations this far back are checked
CLOCK_MARGIN_MS = 5 * 60_000  # revoked_at comes from the revoking replica's clock


@dataclass(frozen=True)
class Held:
    """An event the store could not take yet; queued again, with the same id, when it answers."""

    event_type: str
    data: dict[str, Any]
    fire_key: str | None
    keep_until_ms: int | None
    forever: bool
    event_id: str
    at_ms: int
    not_before_ms: int | None


class Alerts:
    """Produces events into the outbox; `alert_scans.AlertScans` runs the scans, `deliverer` sends.

    `upstream` is the HTTP client deliveries use (its own, with KEYBRAKE_ALERT_TIMEOUT, in
    `keybrake serve`); `instance_id` names this replica in delivery claims; `link_secret` signs
    the approve / deny links of approval.requested (with KEYBRAKE_PUBLIC_URL set; else no links).
    """

    def __init__(
        self,
        store: AlertScanStore,
        sealer: Sealer,
        upstream: Upstream,
        settings: Settings,
        *,
        instance_id: str | None = None,
        link_secret: bytes | None = None,
    ) -> None:
        self.store, self.sealer, self.upstream, self.settings = store, sealer, upstream, settings
        self.link_secret = link_secret  # signs approve / deny links (`core.approvals.link_secret`)
        self.instance_id = instance_id or f"ins_{secrets.token_hex(10)}"
        self.deliverer = Deliverer(store, sealer, upstream, settings, self.instance_id)
        self._tasks: set[asyncio.Task[Any]] = set()
        self.known: list[AlertDestination] = []  # for enforcement.unavailable, when the store is down
        self._unavailable_sent: dict[str, float] = {}
        self.down = False  # enforcement.unavailable was raised; the scans send enforcement.recovered
        self._held: list[Held] = []
        self._revoked_checked_ms: int | None = None
        self._exposed_bucket = -1
        self._exposed_seen: set[tuple[str, str]] = set()

    # -- producing events (never on the request path) ----------------------------------------

    def soon(self, coro: Any) -> None:
        """Run an enqueue off the response path; a failure is logged, never raised."""
        task = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            event(log, "could not queue an alert", logging.ERROR, error=repr(task.exception()))

    async def emit(
        self,
        event_type: str,
        data: dict[str, Any],
        *,
        fire_key: str | None = None,
        keep_until_ms: int | None = None,
        forever: bool = False,
        not_before_ms: int | None = None,
    ) -> int:
        """Queue one event for every destination subscribed to it; returns how many were queued.

        With `fire_key`, at most once per destination ever (the mark is kept until `keep_until_ms`,
        default now, plus the purge's 40 days, or `forever`); `not_before_ms` skips destinations
        created after that time (Unix ms). While the store is down the event is held in memory
        and queued, with the same id, when it answers (`requeue_held`).
        """
        now = self.store.now_ms()
        evt = event_id_for(fire_key) if fire_key else new_event_id(now)
        held = Held(event_type, data, fire_key, keep_until_ms, forever, evt, now, not_before_ms)
        return await self._queue(held)

    async def _queue(self, h: Held) -> int:
        queued = 0
        try:
            for dest in await self.store.list_alerts():
                if h.event_type not in dest.events:
                    continue
                if h.not_before_ms is not None and dest.created_at > h.not_before_ms:
                    continue
                key = f"{h.fire_key}:{dest.id}" if h.fire_key else None
                d = build_delivery(dest, h.event_id, h.event_type, h.data, h.at_ms)
                queued += int(await self.store.enqueue([d], key, keep_until_ms=h.keep_until_ms, forever=h.forever))
        except EnforcementUnavailable as exc:
            self._hold(h)
            event(log, "could not queue an alert; held to queue later", logging.ERROR, alert=h.event_type,
                  event_id=h.event_id, error=str(exc))  # fmt: skip
            return queued
        if queued:
            self.deliverer.wake()
        return queued

    def _hold(self, h: Held) -> None:
        if any(x.event_id == h.event_id for x in self._held):
            return
        self._held.append(h)
        if len(self._held) > MAX_HELD:
            lost = self._held.pop(0)
            event(log, "alert dropped: too many held while the store is down", logging.ERROR,
                  alert=lost.event_type, event_id=lost.event_id)  # fmt: skip

    @property
    def holding(self) -> bool:
        """Events are held in memory, waiting for the store to answer."""
        return bool(self._held)

    async def requeue_held(self) -> int:
        """Queue the events held while the store was down (oldest first); returns how many went."""
        done = 0
        while self._held:
            h = self._held.pop(0)
            before = len(self._held)
            await self._queue(h)
            if len(self._held) > before:  # the store is down again: it went back to the end
                self._held.insert(0, self._held.pop())
                break
            done += 1
        return done

    def cap_hit(self, cap: CapHit, key_id: str | None) -> None:
        """cap.hit once per cap, window and usage level (`hit_level`): a refusal while the cap is far
        from used up (one oversized request) never spends the alert of the cap really running out."""
        level = hit_level(cap.used, cap.limit)
        data = {**cap.as_json(), "key_id": key_id, "reached": level == "reached"}
        fire = f"hit:{cap.scope}:{cap.id}:{cap.name}:{cap.resets_at_ms}:{level}"
        self.soon(self.emit("cap.hit", data, fire_key=fire, keep_until_ms=cap.resets_at_ms,
                            forever=cap.resets_at_ms is None))  # fmt: skip

    def approval_requested(self, rec: ApprovalRecord) -> None:
        """approval.requested for a call just held (docs/approvals.md): once per approval, with
        signed approve / deny links that work until the hold ends when KEYBRAKE_PUBLIC_URL is set."""
        links = None
        if self.settings.public_url and self.link_secret:
            links = decision_links(self.settings.public_url, self.link_secret, rec.id, rec.expires_at)
        self.soon(self._request_approval(rec, approval_data(rec, links)))

    async def _request_approval(self, rec: ApprovalRecord, data: dict[str, Any]) -> int:
        sent = await self.emit("approval.requested", data, fire_key=f"approval:{rec.id}", keep_until_ms=rec.expires_at)
        if sent == 0 and not self.holding:  # no destination takes it: say so where an operator looks
            event(log, "a call waits for approval and no alert destination takes approval.requested", logging.WARNING,
                  approval_id=rec.id, key_id=rec.key_id, decide="keybrake approvals list --state pending")  # fmt: skip
        return sent

    def key_revoked(self, key: KeyRecord) -> None:
        """key.revoked once per key, whichever path revoked it (the scan finds the others)."""
        if key.status != "revoked":
            return
        self.soon(self._emit_revoked(key))

    async def _emit_revoked(self, key: KeyRecord) -> int:
        data = {"key_id": key.id, "label": key.label, "vendor": key.vendor, "reason": key.revoke_reason}
        return await self.emit("key.revoked", data, fire_key=f"revoked:{key.id}", not_before_ms=key.revoked_at)

    def credential_rejected(self, credential: str, vendor: str, key_id: str | None) -> None:
        hour = self.store.now_ms() // 3_600_000
        data = {"credential": credential, "vendor": vendor, "key_id": key_id}
        self.soon(self.emit("credential.rejected", data, fire_key=f"rejected:{credential}:{hour}"))

    def secret_exposed(self, prefix: str, client: str) -> None:
        """secret.exposed once per 5 minutes per kind (`auth.SECRET_KINDS`, a fixed set) and client,
        and at most EXPOSED_MAX events per 5 minutes per replica whatever the clients: requests
        without any key must not be able to flood the destinations (the rest are only logged)."""
        bucket = self.store.now_ms() // UNAVAILABLE_EVERY_MS
        if self._exposed_bucket != bucket:
            self._exposed_bucket, self._exposed_seen = bucket, set()
        mark = (prefix, client)
        if mark in self._exposed_seen:
            return
        if len(self._exposed_seen) >= EXPOSED_MAX:
            event(log, "secret.exposed alert not queued: too many this 5 minutes", logging.WARNING,
                  secret_prefix=prefix, client=client)  # fmt: skip
            return
        self._exposed_seen.add(mark)
        data = {"secret_prefix": prefix, "client": client}
        self.soon(self.emit("secret.exposed", data, fire_key=f"exposed:{prefix}:{client}:{bucket}"))

    def enforcement_unavailable(self, error: str) -> None:
        """Sent from memory, best-effort, at most once per 5 minutes per destination (the store is down)."""
        self.down = True
        now = time.monotonic() * 1000
        for dest in self.known:
            if "enforcement.unavailable" not in dest.events:
                continue
            if now - self._unavailable_sent.get(dest.id, -UNAVAILABLE_EVERY_MS) < UNAVAILABLE_EVERY_MS:
                continue
            self._unavailable_sent[dest.id] = now
            wall = int(time.time() * 1000)
            data = {"error": redact(error)[:300], "instance": self.instance_id}
            d = build_delivery(dest, new_event_id(wall), "enforcement.unavailable", data, wall)
            self.soon(self._send_direct(dest, d))

    async def _send_direct(self, dest: AlertDestination, d: Any) -> None:
        refusal = alert_url_refusal(dest.url, self.settings)
        if refusal is not None:
            event(log, "enforcement.unavailable alert not delivered", logging.WARNING, alert=dest.id, error=refusal)
            return
        try:
            async with asyncio.timeout(self.settings.alert_timeout_s):
                req = UpstreamRequest("POST", dest.url, self.deliverer.headers(dest, d), d.body.encode())
                await self.upstream.send(req)
        except Exception as exc:  # best effort: the store is down, there is no outbox
            event(log, "enforcement.unavailable alert not delivered", logging.WARNING, error=type(exc).__name__)

    # -- the revocation scan (the alert scan job's, and the admin API's after a revoke) ----------

    async def scan_revoked(self) -> int:
        """key.revoked for keys revoked by any path (one DELETE, a bulk revoke, the CLI, another
        replica) since the last scan (24 h back at start); the fire-once mark sends each once."""
        if not any("key.revoked" in d.events for d in await self.store.list_alerts()):
            self._revoked_checked_ms = None  # nobody listens: nothing to look back for later
            return 0
        now = self.store.now_ms()
        last = self._revoked_checked_ms
        since = now - LOOKBACK_MS if last is None else last - CLOCK_MARGIN_MS
        queued = 0
        for key in await self.store.keys_revoked_between(since, now + CLOCK_MARGIN_MS):
            queued += await self._emit_revoked(key)
        self._revoked_checked_ms = now
        return queued

    async def queue_one(
        self, dest: AlertDestination, event_type: str, data: dict[str, Any], fire_key: str, keep_until_ms: int | None
    ) -> int:
        """One fire-once event for one destination (a scan's); `keep_until_ms` None keeps the mark forever."""
        d = build_delivery(dest, event_id_for(fire_key), event_type, data, self.store.now_ms())
        queued = await self.store.enqueue([d], fire_key, keep_until_ms=keep_until_ms, forever=keep_until_ms is None)
        if queued:
            self.deliverer.wake()
        return int(queued)

    async def drain(self, timeout_s: float = 1.0) -> None:
        """Wait (at most `timeout_s`) for events being queued right now (a cap hit, a revocation) to land."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout_s)
