"""Reconciliation: settling reservations whose outcome the vendor decides later.

A Stripe PaymentIntent answered `requires_action` keeps its reservation (the customer can
finish authentication without passing through Keybrake); Twilio answers `price: null` until
a message is sent. Each pass re-reads such objects with the real secret and settles the rows
whose objects are final; after 48 hours the estimate becomes final (docs/sdk-twilio.md).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from keybrake.config import Settings
from keybrake.core.upstream import Upstream, UpstreamRequest
from keybrake.crypto import MasterKeyError, Sealer
from keybrake.jobs.base import Job
from keybrake.logs import event
from keybrake.net.egress import EgressRules
from keybrake.proxy.metrics import ProxyMetrics
from keybrake.store.base import PendingEstimate, ReconcileStore
from keybrake.vendors.base import Vendor, VendorCost

log = logging.getLogger("keybrake.reconcile")
FINAL_AFTER_MS = 48 * 3_600_000
BATCH = 100


class Reconciler:
    """Settles pending rows by reading their objects from the vendor (`run_once`); `ReconcileJob` runs it."""

    def __init__(
        self,
        store: ReconcileStore,
        vendors: dict[str, Vendor],
        upstream: Upstream,
        sealer: Sealer,
        settings: Settings,
        metrics: ProxyMetrics | None = None,
    ) -> None:
        self.store, self.vendors, self.upstream, self.sealer, self.settings = store, vendors, upstream, sealer, settings
        self.metrics = metrics  # a settled row's cost counts in keybrake_settled_usd_total
        self.egress = EgressRules(settings)

    def interval_s(self, vendor: str) -> float:
        """Seconds between one vendor's passes: the vendor's own interval (a vendor setting), else
        KEYBRAKE_RECONCILE_INTERVAL. The one place a vendor's reconcile interval is chosen."""
        own = self.vendors[vendor].reconcile_interval_s if vendor in self.vendors else None
        return own if own is not None else self.settings.reconcile_interval_s

    async def run_once(self, vendor: str | None = None) -> int:
        """One pass over every pending row (of one vendor, or all); returns how many it settled."""
        now = self.store.now_ms()
        settled = 0
        after: str | None = None
        while True:
            rows = await self.store.pending_estimates(now, BATCH, vendor=vendor, after_id=after)
            for row in rows:
                settled += await self._one(row, now)
            if len(rows) < BATCH:
                return settled
            after = rows[-1].id

    async def _one(self, row: PendingEstimate, now: int) -> int:
        vendor = self.vendors.get(row.vendor or "")
        cost = await self._fetch_cost(vendor, row) if vendor is not None else None
        if cost is not None:
            booked = cost.cost_usd
            ok = await self.store.settle_pending(row.id, booked, "response", cost.cost_kind, cost.count)
        elif now - row.ts >= FINAL_AFTER_MS:
            booked = row.reserved_usd
            ok = await self.store.settle_pending(row.id, booked, "estimate", row.cost_kind)
        else:
            return 0
        if ok and self.metrics is not None:
            self.metrics.settled(row.vendor, booked)  # once: settle_pending is True for one caller only
        if ok:
            event(log, "reconciled", request_id=row.id, key_id=row.key_id, vendor=row.vendor)
        return int(ok)

    async def _fetch_cost(self, vendor: Vendor, row: PendingEstimate) -> VendorCost | None:
        cred = await self.store.credential(row.credential or "")
        if cred is None or cred.vendor != vendor.name or cred.generation != row.credential_gen:
            # The credential the row's key was bound to is gone (deleted, or the name now holds a
            # later credential, possibly of another account): nothing is sent with any other secret.
            # The row keeps its reservation; after 48 hours the estimate becomes final.
            return None
        base = (cred.base_url or vendor.default_base_url).rstrip("/")
        refusal = self.egress.refusal(cred.base_url or vendor.default_base_url, vendor.name, vendor.upstream_hosts)
        if refusal is not None:
            # The current settings refuse this destination: nothing is sent; after 48 hours the
            # estimate becomes final, as for any object that cannot be read.
            event(log, "reconciliation lookup refused", logging.WARNING, request_id=row.id, credential=cred.name,
                  error=refusal)  # fmt: skip
            return None
        try:
            secret = self.sealer.open(cred.secret_enc, f"credential:{cred.name}")
        except MasterKeyError:
            return None
        where = vendor.lookup(row.vendor_object_id, row.account_context, secret)
        if where is None:
            return None
        path, extra = where
        headers = [*vendor.upstream_headers(secret), *extra, ("accept-encoding", "identity")]
        try:
            resp = await self.upstream.send(UpstreamRequest("GET", base + path, headers, b""))
        except Exception as exc:  # any failure: try again next pass
            event(log, "reconciliation lookup failed", logging.WARNING, request_id=row.id, error=type(exc).__name__)
            return None
        if resp.status != 200:
            return None
        try:
            doc = json.loads(resp.body)
        except ValueError:
            return None
        related = []
        for extra_path in vendor.related_lookups(row.vendor_object_id, secret):
            try:
                more = await self.upstream.send(UpstreamRequest("GET", base + extra_path, headers, b""))
                if more.status != 200:
                    return None
                related.append(json.loads(more.body))
            except Exception as exc:  # any failure: try again next pass
                event(log, "reconciliation lookup failed", logging.WARNING, request_id=row.id, error=type(exc).__name__)
                return None
        result = vendor.reconcile(doc, self.settings.fx_rates, related)
        if result is None:
            return None
        if row.credential:
            await self.store.ledger_put(row.credential, vendor.ledger_entries(doc, row.account_context))
        return result


class ReconcileJob(Job):
    """Reconciliation on each vendor's own interval (`Reconciler.interval_s`), one vendor's pass at a time.

    Each vendor's first pass comes one interval after start; the next, one interval after its
    previous pass ended. A pass that fails (the store is down) is logged with its vendor.
    """

    name = "reconcile"
    log = logging.getLogger("keybrake.reconcile")
    failure = "reconciliation pass failed"

    def __init__(self, reconciler: Reconciler) -> None:
        self.reconciler = reconciler
        self._due: dict[str, float] | None = None  # loop time each vendor's next pass is due
        self._vendor = ""  # the vendor of the pass running now

    def _schedule(self) -> dict[str, float]:
        if self._due is None:
            now = asyncio.get_running_loop().time()
            self._due = {name: now + self.reconciler.interval_s(name) for name in self.reconciler.vendors}
        return self._due

    def delay_s(self) -> float:
        due = self._schedule()
        return max(0.0, min(due.values()) - asyncio.get_running_loop().time())

    async def run_once(self) -> int:
        """The pass of the vendor due first; returns the rows it settled."""
        due = self._schedule()
        self._vendor = min(due, key=due.__getitem__)
        try:
            return await self.reconciler.run_once(self._vendor)
        finally:
            due[self._vendor] = asyncio.get_running_loop().time() + self.reconciler.interval_s(self._vendor)

    def failure_fields(self) -> dict[str, Any]:
        return {"vendor": self._vendor}
