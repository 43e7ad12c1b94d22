"""The settle writer: one settlement the store refuses cannot strand the others of its batch."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from keybrake.proxy.settler import SettleWriter
from keybrake.store.base import SettleJob, Settlement, Store
from tests.store.test_store_contract import DAY0, Clock, caps, key, row


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
