"""The settle writer: one settlement the store refuses cannot strand the others of its batch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from keybrake.proxy.settler import SettleWriter
from keybrake.store.base import SettleJob, Settlement, Store
from tests.store.contract import DAY0, Clock, caps, key, row


async def test_one_settlement_the_store_refuses_cannot_strand_its_batch(open_engine: Callable[..., Store]) -> None:
    store = open_engine(Clock(DAY0 + 3_600_000))
    await store.insert_key(key(store), "h1")
    rows, reserved = [], []
    for _ in range(3):
        r = row(store)
        r.reserved_usd = 1_000_000
        res = await store.reserve("vk_1", 1, caps("vk_1", 1_000_000, None), r, "me")
        rows.append(r)
        reserved.append(res.items)
    good = Settlement("allowed", 900_000, "response", "charge", False, forwarded=True)
    bad = Settlement("allowed", 2**70, "response", "charge", False, forwarded=True)  # no column holds it
    writer = SettleWriter(store)
    done = [
        writer.submit(SettleJob(r, items, bad if i == 1 else good, "daily_usd"))
        for i, (r, items) in enumerate(zip(rows, reserved, strict=True))
    ]
    await asyncio.wait_for(asyncio.gather(*done), 10)
    got = [await store.get_audit(r.id) for r in rows]
    assert [g["verdict"] for g in got if g] == ["allowed", "outcome_unknown", "allowed"]
    assert got[1] is not None and got[1]["cost_usd"] == 1_000_000  # its whole reservation kept
    daily = (await store.counters_for("key:vk_1", [("daily_usd", DAY0)]))["daily_usd"]
    assert (daily.used, daily.reserved) == (1_800_000, 1_000_000)


async def test_a_release_skips_rows_that_count_nothing_and_can_trim_the_settling_row(
    open_engine: Callable[..., Store],
) -> None:
    """Found by the ledger generator: a row whose count was released to 0 made the next release
    divide by zero, and the batch was written degraded (the capture's $5 stayed reserved)."""
    from keybrake.core.ledger import LedgerEntry, ObjectCount

    store = open_engine(Clock(DAY0 + 3_600_000))
    await store.insert_key(key(store), "h1")
    fact = LedgerEntry("ch_1", "charge", None, None, "usd", 1000)

    async def settle(cost: int, count: ObjectCount) -> str:
        r = row(store)
        r.credential, r.reserved_usd = "default", cost
        res = await store.reserve("vk_1", 1, caps("vk_1", cost, None), r, "me")
        job = SettleJob(r, res.items, Settlement("allowed", cost, "response", "charge", False, forwarded=True),
                        "daily_usd", ledger=("default", [fact]), count=count)  # fmt: skip
        await store.settle_many([job])
        return r.id

    await settle(10_000_000, ObjectCount("ch_1", 1000))  # authorised $10
    await settle(0, ObjectCount("ch_1", 0, 0))  # released entirely (a refund of the uncaptured charge)
    capture = await settle(10_000_000, ObjectCount("ch_1", 1000, 500))  # counts $10, but only $5 moves
    got = await store.get_audit(capture)
    assert got is not None and got["verdict"] == "allowed" and got["cost_usd"] == 5_000_000
    daily = (await store.counters_for("key:vk_1", [("daily_usd", DAY0)]))["daily_usd"]
    assert (daily.used, daily.reserved) == (5_000_000, 0)
    assert (await store.ledger_get("default", ["ch_1"]))["ch_1"].amount_counted == 500
