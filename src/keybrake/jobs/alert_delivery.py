"""Delivering the alert outbox: one worker per destination, claims leased on the database clock.

Every replica runs a `Deliverer`. For each destination it runs one worker task that claims that
destination's due deliveries (`Store.claim_deliveries`: one UPDATE sets `claimed_by` and
`lease_until`, so one replica POSTs each), sends the batch concurrently, each POST bounded by
KEYBRAKE_ALERT_TIMEOUT (s), and records every POST actually made (`Store.settle_delivery`). A
silent or slow destination only holds its own worker; a failed POST is retried after
`retry_delay_ms` (doubling from KEYBRAKE_ALERT_RETRY_BASE, at most an hour), MAX_ATTEMPTS in all.

A replica that dies mid-delivery leaves its claims; they lapse at `lease_until` and another
replica takes them over (the receiver may then see the event twice, with the same
`X-Keybrake-Event-Id`). A POST that succeeded but whose outcome could not be written (the store
was down) is written again on later passes, so it is not sent twice if the store returns before
the lease lapses. A clean stop releases this replica's claims so they are due again at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import secrets
import socket
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

from keybrake.config import Settings
from keybrake.core.errors import EnforcementUnavailable
from keybrake.core.upstream import Upstream, UpstreamRequest
from keybrake.core.upstream_url import is_loopback, url_refusal
from keybrake.crypto import Sealer
from keybrake.jobs.alert_format import retry_delay_ms, sign
from keybrake.jobs.base import Job
from keybrake.logs import event, redact
from keybrake.net.egress import ForbiddenAddress, GuardedResolver
from keybrake.store.base import AlertDestination, Delivery, OutboxStore

log = logging.getLogger("keybrake.jobs.alerts")

MAX_ATTEMPTS = 12
BATCH = 10  # deliveries of one destination claimed and sent at once
MAX_UNSETTLED = 10_000  # outcomes kept in memory while the store is down


def alert_url_refusal(url: str, settings: Settings) -> str | None:
    """Why an alert may not be delivered to `url` under `settings` (a sentence), or None.

    The vendor-credential rules without the vendor host list, a query string allowed: https, or
    plain http to loopback with KEYBRAKE_ALLOW_INSECURE_UPSTREAM=1. Checked when a destination
    is written and again before every delivery.
    """
    refusal = url_refusal(
        url,
        allowed_hosts=None,
        listed_hosts=settings.upstream_hosts,
        allow_insecure=settings.allow_insecure_upstream,
        what="url",
        allow_query=True,
    )
    if refusal is not None:
        return refusal
    host = (urlsplit(url).hostname or "").lower()
    if not _is_ip(host) and is_loopback(host) and host not in settings.upstream_hosts:
        return _private_refusal(host)
    return None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _private_refusal(host: str) -> str:
    return (
        f"url host {host!r} resolves only to non-public addresses: a host name must resolve to a public"
        " address unless that exact name is listed in KEYBRAKE_UPSTREAM_HOSTS (or use the IP address)"
    )


async def alert_url_check(url: str, settings: Settings, timeout_s: float = 2.0) -> tuple[str | None, list[str]]:
    """What delivery will make of `url` now: (refusal sentence or None, warnings).

    `alert_url_refusal`, then the delivery client's DNS rule (`egress.GuardedResolver`): a host
    name (not an IP address) must resolve to at least one public address unless that exact name
    is in KEYBRAKE_UPSTREAM_HOSTS. A name that does not resolve now (or not within `timeout_s`)
    is only a warning: deliveries are retried and DNS may change."""
    refusal = alert_url_refusal(url, settings)
    if refusal is not None:
        return refusal, []
    host = (urlsplit(url).hostname or "").lower()
    if _is_ip(host):
        return None, []
    try:
        async with asyncio.timeout(timeout_s):
            resolver = GuardedResolver(settings.upstream_hosts)
            try:
                await resolver.resolve(host, 443, socket.AF_UNSPEC)
            finally:
                await resolver.close()
    except ForbiddenAddress:
        return _private_refusal(host), []
    except (OSError, TimeoutError) as exc:
        return None, [f"url host {host!r} does not resolve now ({type(exc).__name__}); deliveries fail until it does"]
    return None, []


def lease_ms(settings: Settings) -> int:
    """How long a claim lasts (ms): two POST timeouts plus 10 s for the database writes around them."""
    return int((2 * settings.alert_timeout_s + 10) * 1000)


@dataclass(frozen=True)
class Outcome:
    """One POST made and its result, to be written to the outbox."""

    delivery_id: str
    attempt_id: str  # one POST: its outcome is counted once however often it is written
    ok: bool
    status: int | None
    error: str | None
    retry_in_ms: int


class Deliverer(Job):
    """The delivery job: keeps one worker per destination (`_worker`) and writes outcomes.

    Each pass (every second, or KEYBRAKE_ALERT_INTERVAL if shorter) writes the outcomes the store
    refused earlier, starts a worker for each new destination, stops the workers of deleted
    ones, and every KEYBRAKE_ALERT_INTERVAL s fails the deliveries of deleted destinations.
    Stopped after the alert scans (`stop_late`): events they queue while stopping are still sent.
    """

    name = "alert-delivery"
    log = logging.getLogger("keybrake.jobs.alerts")
    failure = "alert delivery pass failed"
    first_pass_now = True
    stop_late = True

    def __init__(
        self, store: OutboxStore, sealer: Sealer, upstream: Upstream, settings: Settings, instance_id: str
    ) -> None:
        self.store, self.sealer, self.upstream, self.settings = store, sealer, upstream, settings
        self.instance_id = instance_id
        self._workers: dict[str, asyncio.Task[None]] = {}
        self._wake: dict[str, asyncio.Event] = {}
        self._unsettled: list[Outcome] = []
        self._last_orphans = 0.0
        self.posts = 0  # POSTs made by this replica (a test reads it)

    def wake(self) -> None:
        """New deliveries were queued: every worker looks for due ones now."""
        for ev in self._wake.values():
            ev.set()

    def delay_s(self) -> float:
        return min(1.0, self.settings.alert_interval_s)

    async def run_once(self) -> int:
        """One pass (see the class docstring); returns how many workers it started."""
        await self._flush_unsettled()
        dests = {d.id: d for d in await self.store.list_alerts()}
        started = 0
        for dest_id, dest in dests.items():
            task = self._workers.get(dest_id)
            if task is None or task.done():
                self._wake[dest_id] = asyncio.Event()
                self._workers[dest_id] = asyncio.create_task(self._worker(dest), name=f"alerts-{dest_id}")
                started += 1
        for dest_id in [d for d in self._workers if d not in dests]:
            self._workers.pop(dest_id).cancel()
            self._wake.pop(dest_id, None)
        if time.monotonic() - self._last_orphans >= self.settings.alert_interval_s:
            self._last_orphans = time.monotonic()
            await self.store.fail_orphaned_deliveries("destination deleted")
        return started

    async def on_stop(self) -> None:
        await self.stop()

    async def stop(self) -> None:
        """Cancel the workers and release this replica's claims (best effort, bounded)."""
        workers = list(self._workers.values())
        self._workers.clear()
        for task in workers:
            task.cancel()
        for task in workers:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        with contextlib.suppress(Exception):
            async with asyncio.timeout(2.0):
                while True:  # each write is idempotent: try again until written or out of time
                    try:
                        await self._flush_unsettled()
                        break
                    except EnforcementUnavailable:
                        await asyncio.sleep(0.1)
        with contextlib.suppress(Exception):
            async with asyncio.timeout(1.0):
                await self.store.release_claims(self.instance_id)

    async def _worker(self, dest: AlertDestination) -> None:
        """Up to BATCH POSTs of this destination in flight; claims more as soon as one ends."""
        tick = min(1.0, self.settings.alert_interval_s)
        inflight: set[asyncio.Task[None]] = set()
        try:
            while True:
                batch: list[Delivery] = []
                free = BATCH - len(inflight)
                if free > 0:
                    try:
                        batch = await self.store.claim_deliveries(
                            dest.id, self.instance_id, lease_ms(self.settings), free
                        )
                    except EnforcementUnavailable as exc:
                        event(log, "could not claim alert deliveries", logging.ERROR, alert=dest.id, error=str(exc))
                    except Exception as exc:  # never let one destination's worker die silently
                        event(log, "alert worker error", logging.ERROR, alert=dest.id, error=repr(exc))
                for d in batch:
                    task = asyncio.create_task(self._attempt(dest, d))
                    inflight.add(task)
                    task.add_done_callback(inflight.discard)
                if batch and len(batch) == free:
                    continue  # there may be more due
                wake = self._wake.setdefault(dest.id, asyncio.Event())
                waiter = asyncio.create_task(wake.wait())
                try:
                    await asyncio.wait({waiter, *inflight}, timeout=tick, return_when=asyncio.FIRST_COMPLETED)
                finally:
                    waiter.cancel()
                wake.clear()
        finally:
            for task in list(inflight):
                task.cancel()
            for task in list(inflight):
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _attempt(self, dest: AlertDestination, d: Delivery) -> None:
        status: int | None = None
        error: str | None = None
        attempt = "att_" + secrets.token_hex(10)
        refusal = alert_url_refusal(dest.url, self.settings)
        if refusal is not None:
            # Accepted under other settings, refused by this process's: nothing is sent.
            error = f"refused by the current settings: {refusal}"
        else:
            try:
                self.posts += 1
                async with asyncio.timeout(self.settings.alert_timeout_s):
                    req = UpstreamRequest("POST", dest.url, self.headers(dest, d), d.body.encode())
                    resp = await self.upstream.send(req)
                status = resp.status
                if not 200 <= resp.status < 300:
                    error = redact(resp.body[:300].decode("utf-8", "replace"))
            except asyncio.CancelledError:
                # A stop mid-POST: the attempt is recorded (stop() writes it) and due again at once.
                self._unsettled.append(Outcome(d.id, attempt, False, None, "interrupted: this replica stopped", 0))
                raise
            except TimeoutError:
                error = f"no answer within KEYBRAKE_ALERT_TIMEOUT ({self.settings.alert_timeout_s:g} s)"
            except Exception as exc:  # any failure: retried with backoff
                error = f"{type(exc).__name__}: {redact(str(exc))[:200]}"
        retry = retry_delay_ms(d.attempts + 1, self.settings.alert_retry_base_s)
        if error is not None:
            # the reason (the receiver's answer or the connection error; never the URL's path)
            event(log, "alert delivery failed", logging.WARNING, delivery=d.id, alert=dest.id, type=d.event_type,
                  attempts=d.attempts + 1, status=status, error=error[:300])  # fmt: skip
        await self._settle(Outcome(d.id, attempt, error is None, status, error, retry))

    async def _settle(self, o: Outcome) -> None:
        try:
            await self.store.settle_delivery(
                o.delivery_id, self.instance_id, attempt_id=o.attempt_id, ok=o.ok, status=o.status, error=o.error,
                retry_in_ms=o.retry_in_ms, max_attempts=MAX_ATTEMPTS,
            )  # fmt: skip
        except asyncio.CancelledError:
            # A stop while the outcome was being written: kept, so stop() writes it (attempts == POSTs).
            self._unsettled.append(o)
            raise
        except EnforcementUnavailable as exc:
            event(log, "could not record an alert delivery; kept to retry", logging.ERROR, delivery=o.delivery_id,
                  error=str(exc))  # fmt: skip
            self._unsettled.append(o)
            if len(self._unsettled) > MAX_UNSETTLED:
                lost = self._unsettled.pop(0)
                event(log, "alert outcome dropped (too many unwritten)", logging.ERROR, delivery=lost.delivery_id)

    async def _flush_unsettled(self) -> None:
        while self._unsettled:
            o = self._unsettled[0]
            await self.store.settle_delivery(
                o.delivery_id, self.instance_id, attempt_id=o.attempt_id, ok=o.ok, status=o.status, error=o.error,
                retry_in_ms=o.retry_in_ms, max_attempts=MAX_ATTEMPTS,
            )  # fmt: skip
            self._unsettled.pop(0)

    def headers(self, dest: AlertDestination, d: Delivery) -> list[tuple[str, str]]:
        secret = self.sealer.open(dest.secret_enc, f"alert:{dest.id}")
        return [
            ("content-type", "application/json"),
            ("user-agent", "keybrake-alerts"),
            ("x-keybrake-signature", sign(secret, d.body.encode(), int(time.time()))),
            ("x-keybrake-event-id", d.event_id),
        ]
