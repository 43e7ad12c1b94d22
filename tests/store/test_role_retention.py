"""The retention role (`RetentionStore`, jobs/retention.py): each purge deletes what is older than
its cutoff and that nothing live still needs, and says how many rows went; on every engine.
(tests/test_retention.py runs the whole retention job over generated traffic.)"""

from __future__ import annotations

from dataclasses import replace

from keybrake.core.ledger import LedgerEntry
from keybrake.core.timefmt import DAY_MS
from keybrake.store.base import AlertDestination, AuditRow, Delivery, RetentionStore, Settlement, Store
from keybrake.store.ids import new_audit_id
from tests.store.contract import DAY0, Clock, caps, key, row

KEPT = Settlement("outcome_unknown", 1_000, "estimate", "charge", keep_reservation=True, forwarded=True)
DONE = Settlement("allowed", 1_000, "response", "charge", keep_reservation=False, forwarded=True)


async def test_audit_rows_go_only_once_nothing_needs_them(
    store: Store, clock: Clock, retention: RetentionStore
) -> None:
    """Old rows go; a row in flight, a row keeping its reservation, and any row of a key still in
    the store stay (a budget created later seeds from them)."""
    await store.insert_key(key(store, "vk_1"), "h1")
    keyless = [AuditRow(id=new_audit_id(clock.ms + n), ts=clock.ms + n, method="GET", path="/", verdict="denied_auth")
               for n in range(3)]  # fmt: skip
    for r in keyless:
        await store.insert_audit(r)
    flying = row(store)
    flying.key_id, flying.id = None, new_audit_id(clock.ms + 5)
    await store.reserve("vk_1", 1, caps("vk_1", 1_000, None), flying, "me")
    keyed = row(store)
    keyed.id = new_audit_id(clock.ms + 6)
    res = await store.reserve("vk_1", 1, caps("vk_1", 1_000, None), keyed, "me")
    await store.settle(keyed, res.items, DONE, None)
    clock.ms += DAY_MS
    page = await retention.purgeable_audit(clock.ms, 2)
    assert [r["id"] for r in page] == [keyless[0].id, keyless[1].id]  # oldest first, `limit` at most
    rest = await retention.purgeable_audit(clock.ms, 10, page[-1]["id"])
    assert [r["id"] for r in rest] == [keyless[2].id]
    assert await retention.purgeable_audit(keyless[1].ts, 10) == page[:1]  # older than the cutoff only
    assert await retention.delete_audit([r["id"] for r in page + rest]) == 3
    assert await retention.delete_audit([]) == 0
    assert await retention.purgeable_audit(clock.ms, 10) == []


async def test_keys_and_counters_go_once_their_windows_are_over(
    store: Store, clock: Clock, retention: RetentionStore
) -> None:
    """A key expired before the cutoff goes with all its counters, unless a row of it still keeps
    a reservation; counters of windows that ended before the cutoff go, `total` windows stay."""
    await store.insert_key(replace(key(store, "vk_1"), expires_at=clock.ms + 1000), "h1")
    await store.insert_key(replace(key(store, "vk_2"), expires_at=clock.ms + 1000), "h2")
    await store.insert_key(replace(key(store, "vk_3"), expires_at=clock.ms + 400 * DAY_MS), "h3")
    for kid in ("vk_1", "vk_2", "vk_3"):
        r = replace(row(store), key_id=kid)
        res = await store.reserve(kid, 1, caps(kid, 1_000, None), r, "me")
        await store.settle(r, res.items, KEPT if kid == "vk_2" else DONE, None)
    clock.ms += 40 * DAY_MS
    assert await retention.purge_keys(clock.ms, 1) == 1  # vk_1; vk_2 keeps a reservation, vk_3 is live
    assert await store.get_key("vk_1") is None and await store.get_key("vk_2") is not None
    assert (await store.counters_for("key:vk_1", [("total_usd", 0)]))["total_usd"].used == 0
    # vk_2's day and hour are kept (its reservation settles into them); vk_3's go, its total stays
    assert await retention.purge_counters(clock.ms, 1) == 2
    assert await retention.purge_counters(clock.ms, 10) == 0
    assert (await store.counters_for("key:vk_3", [("total_usd", 0)]))["total_usd"].used == 1_000
    kept = await store.counters_for("key:vk_2", [("daily_usd", DAY0)])
    assert kept["daily_usd"].reserved == 1_000


async def test_outbox_and_ledger_rows_go_once_final_and_untouched(
    store: Store, clock: Clock, retention: RetentionStore
) -> None:
    dest = AlertDestination("alr_1", "webhook", "https://x.test", b"s", ("key.revoked",), (), clock.ms)
    await store.insert_alert(dest)
    for n in range(3):
        d = Delivery(f"dlv_{n}", f"evt_{n}", "alr_1", "key.revoked", "{}", clock.ms, clock.ms)
        await store.enqueue([d], None)
    for n in (0, 1):  # delivered and failed; dlv_2 stays pending
        await store.claim_deliveries("alr_1", "ins", 10_000, 1)
        await store.settle_delivery(f"dlv_{n}", "ins", attempt_id=f"att_{n}", ok=n == 0, status=500, error=None,
                                    retry_in_ms=0, max_attempts=1)  # fmt: skip
    await store.ledger_put("default", [LedgerEntry("ch_old", "charge", None, None, "usd", 100)])
    clock.ms += 40 * DAY_MS
    await store.ledger_put("default", [LedgerEntry("ch_new", "charge", None, None, "usd", 100)])
    assert await retention.purge_outbox(clock.ms, 1) == 2
    assert [d.id for d in await store.list_deliveries(10)] == ["dlv_2"]
    assert await retention.purge_ledger(clock.ms, 10) == 1  # untouched for longer than an object lives
    assert set(await store.ledger_get("default", ["ch_old", "ch_new"])) == {"ch_new"}
