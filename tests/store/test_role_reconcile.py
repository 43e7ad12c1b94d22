"""The reconcile role (`ReconcileStore`, jobs/reconcile.py): estimates whose reservation waits for
the vendor's final word are found, oldest first, and settled once; on every engine."""

from __future__ import annotations

from dataclasses import replace

from keybrake.store.base import AuditRow, PendingEstimate, ReconcileStore, Settlement, Store
from keybrake.store.ids import new_audit_id
from tests.store.contract import DAY0, Clock, caps, key

KEPT = Settlement("allowed", 5_000, "estimate", "charge", keep_reservation=True, forwarded=True)


async def _pending(store: Store, clock: Clock, vendor: str, object_id: str | None) -> AuditRow:
    """A forwarded row settled with its estimate kept (the vendor's final cost not known yet)."""
    clock.ms += 1000
    r = AuditRow(id=new_audit_id(clock.ms), ts=clock.ms, method="POST", path="/v1/x", verdict="in_flight",
                 key_id="vk_1", vendor=vendor, credential="default", reserved_usd=5_000)  # fmt: skip
    res = await store.reserve("vk_1", 1, caps("vk_1", 5_000, None), r, "me")
    r.vendor_object_id = object_id
    await store.settle(r, res.items, KEPT, "daily_usd")
    return r


async def test_pending_estimates_are_found_oldest_first_and_settled_once(
    store: Store, clock: Clock, reconcile: ReconcileStore
) -> None:
    await store.insert_key(replace(key(store), credential_gen="cg_1"), "h1")
    a = await _pending(store, clock, "stripe", "ch_a")
    b = await _pending(store, clock, "twilio", "SM_b")
    c = await _pending(store, clock, "stripe", "ch_c")
    await _pending(store, clock, "stripe", None)  # nothing to look up: never reconciled by id
    want_a = PendingEstimate(a.id, a.ts, "vk_1", "stripe", "default", "ch_a", None, 5_000, "charge", "cg_1")
    assert await reconcile.pending_estimates(clock.ms + 1, 10) == [
        want_a,
        replace(want_a, id=b.id, ts=b.ts, vendor="twilio", vendor_object_id="SM_b"),
        replace(want_a, id=c.id, ts=c.ts, vendor_object_id="ch_c"),
    ]
    assert [p.id for p in await reconcile.pending_estimates(c.ts, 10)] == [a.id, b.id]  # older than c
    assert [p.id for p in await reconcile.pending_estimates(clock.ms + 1, 10, vendor="stripe")] == [a.id, c.id]
    assert [p.id for p in await reconcile.pending_estimates(clock.ms + 1, 1, after_id=a.id)] == [b.id]

    before = await store.get_audit(a.id)
    assert before is not None and before["cap_usage_after_usd"] == 0  # its estimate still reserved
    assert await reconcile.settle_pending(a.id, 4_200, "response", "charge")
    assert not await reconcile.settle_pending(a.id, 9_999, "response", "charge")  # settled once
    got = await store.get_audit(a.id)
    assert got is not None and (got["verdict"], got["cost_usd"], got["cost_source"], got["settled_by"]) == (
        "allowed", 4_200, "response", "reconciliation"
    )  # fmt: skip
    assert got["cap_usage_after_usd"] == 4_200  # the key's usage after this row's settlement
    assert await reconcile.settle_pending(b.id, 1_000, "response", "sms")
    got_b = await store.get_audit(b.id)
    assert got_b is not None and got_b["cap_usage_after_usd"] == 5_200
    daily = (await store.counters_for("key:vk_1", [("daily_usd", DAY0)]))["daily_usd"]
    assert (daily.used, daily.reserved) == (5_200, 2 * 5_000)  # the others still hold their estimate
    assert [p.id for p in await reconcile.pending_estimates(clock.ms + 1, 10)] == [c.id]
