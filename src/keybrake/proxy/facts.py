"""Facts about vendor objects a request depends on: the ledger first, else one pre-flight GET."""

from __future__ import annotations

import time
from collections.abc import Awaitable
from typing import Any, TypeVar

from keybrake import deadline
from keybrake.core.ledger import LedgerEntry
from keybrake.core.upstream import (
    Upstream,
    UpstreamForbidden,
    UpstreamOutcomeUnknown,
    UpstreamRequest,
    UpstreamUnreachable,
)
from keybrake.proxy.context import RequestContext
from keybrake.proxy.decisions import json_or_none
from keybrake.proxy.snapshots import KeySnapshots
from keybrake.store.base import KeyRecord, ReservationStore
from keybrake.vendors.base import Vendor, VendorRequest

T = TypeVar("T")


async def find_facts(
    ctx: RequestContext,
    store: ReservationStore,
    upstream: Upstream,
    snapshots: KeySnapshots,
    key: KeyRecord,
    vendor: Vendor,
    vreq: VendorRequest,
    object_ids: list[str],
) -> dict[str, LedgerEntry]:
    """Facts from the ledger, else one pre-flight GET per object with the real secret.

    Pre-flight GETs are recorded in the row's `preflight_lookup` and count toward no cap.
    Only the time spent in the vendor (`upstream.send`) moves the request's deadline; every store
    call made here (`ledger_get`, `credential`, `ledger_put`) counts toward it like any other.
    """
    found = await store.ledger_get(key.credential, object_ids)
    for oid in object_ids:
        if oid in found:
            continue
        secret, base_url = snapshots.credential(key, await store.credential(key.credential))
        where = vendor.lookup(oid, vreq.account_context, secret)
        if where is None:
            continue
        path, extra = where
        headers = [*vendor.upstream_headers(secret), *extra, ("accept-encoding", "identity")]
        lookup: dict[str, Any] = {"object": oid, "path": path}
        try:
            resp = await _vendor_time(upstream.send(UpstreamRequest("GET", base_url.rstrip("/") + path, headers, b"")))
        except (UpstreamUnreachable, UpstreamForbidden, UpstreamOutcomeUnknown) as exc:
            lookup["error"] = type(exc).__name__
        else:
            lookup.update(status=resp.status, ms=round(resp.elapsed_ms, 3))
            ctx.upstream_ms += resp.elapsed_ms
            if resp.status == 200:
                entries = vendor.ledger_entries(
                    json_or_none(resp.body, {k.lower(): v for k, v in resp.headers}), vreq.account_context
                )
                await store.ledger_put(key.credential, entries)
                found.update({e.object_id: e for e in entries if e.object_id == oid})
        ctx.row.preflight_lookup = lookup
    return found


async def _vendor_time(call: Awaitable[T]) -> T:
    """Await a vendor call; its duration (seconds, success or not) moves the request's deadline."""
    sent = time.monotonic()
    try:
        return await call
    finally:
        d = deadline.current()
        if d is not None:
            d.extend(time.monotonic() - sent)
