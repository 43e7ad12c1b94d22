"""Other ways alert events were duplicated or lost, each closed (docs/operations.md, alert delivery)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import time
from dataclasses import replace
from pathlib import Path
from typing import cast

from keybrake.config import Settings
from keybrake.core.timefmt import DAY_MS, rfc3339
from keybrake.crypto import Sealer
from keybrake.jobs.alerts import Alerts
from keybrake.store import open_store
from keybrake.store.base import AlertDestination, Store
from tests import harness
from tests.fakes.raw_receiver import RawReceiver
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, store_options, wait_for
from tests.test_alert_model import FlakyStore, Receivers, _empty
from tests.test_alerts import alert, charge
from tests.waits import wait_until_async


async def _one_replica(tmp: Path, kinds: list[str], lose_settles: float) -> tuple[Alerts, FlakyStore, Receivers]:
    url = harness.DATABASE_URL
    if url is not None:
        _empty(url)
    cfg = replace(
        Settings(data_dir=tmp, allow_insecure_upstream=True, upstream_hosts=("127.0.0.1",)),
        alert_timeout_s=0.3, alert_retry_base_s=0.05, alert_interval_s=0.05,
    )  # fmt: skip
    sealer = Sealer(os.urandom(32))
    store = FlakyStore(open_store(url, tmp, migrate=True, pg=store_options()), random.Random(0), lose_settles)
    receivers = Receivers(kinds)
    for i in range(len(kinds)):
        dest_id = f"alr_{i:04d}"
        dest = AlertDestination(dest_id, "webhook", f"http://127.0.0.1:9/d{i}", sealer.seal(b"s", f"alert:{dest_id}"),
                                ("key.revoked",), (50,), 0)  # fmt: skip
        await store.inner.insert_alert(dest)
    return Alerts(cast(Store, store), sealer, receivers, cfg, instance_id="ins_1"), store, receivers


async def _deliver(a: Alerts, receivers: Receivers, want: int) -> None:
    task = asyncio.create_task(a.deliverer.run_forever())
    await wait_until_async(lambda: sum(receivers.accepted.values()) >= want, f"{want} POSTs accepted")
    await asyncio.sleep(0.3)  # more passes: nothing may be sent again
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def test_an_event_raised_while_the_store_is_down_is_queued_once_when_it_is_back(tmp_path: Path) -> None:
    a, store, receivers = await _one_replica(tmp_path, ["ok"], 0.0)
    try:
        store.fault = "down"  # nothing written: held in memory
        assert await a.emit("key.revoked", {"key_id": "vk_1"}) == 0
        store.fault = "lost"  # written, but the answer to COMMIT was lost: held too
        await a.emit("key.revoked", {"key_id": "vk_2"})
        assert [h.data["key_id"] for h in a._held] == ["vk_1", "vk_2"]
        assert len(await store.inner.list_deliveries(10)) == 1
        assert await a.requeue_held() == 2 and a._held == []
        assert await a.requeue_held() == 0
        rows = await store.inner.list_deliveries(10)
        assert len(rows) == 2  # vk_2 was not queued twice
        await _deliver(a, receivers, 2)
        assert sorted(receivers.accepted.values()) == [1, 1]
    finally:
        await store.inner.close()


async def test_a_post_whose_outcome_could_not_be_written_is_not_sent_again(tmp_path: Path) -> None:
    a, store, receivers = await _one_replica(tmp_path, ["ok"], 1.0)  # every outcome's answer lost
    try:
        await a.emit("key.revoked", {"key_id": "vk_1"})
        task = asyncio.create_task(_deliver(a, receivers, 1))
        await wait_until_async(lambda: store.lost >= 3, "3 passes to write the outcome and lose the answer")
        store.lose_settles = 0.0
        await task
        (row,) = await store.inner.list_deliveries(10)
        assert (row.state, row.attempts) == ("delivered", 1)
        assert list(receivers.posts.values()) == [1]
    finally:
        await store.inner.close()


def test_threshold_marks_end_with_their_window_and_a_total_cap_fires_once(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    """Day 1: $1 of a $2 daily cap and of a $2 total cap: two thresholds. Day 2: the daily cap's
    new window fires again; the total cap (now 100 %) does not. 41 days on, after the purge of
    fire-once marks, the total cap's threshold still does not fire again (before: it did)."""
    now = [1_795_000_000_000 - 1_795_000_000_000 % DAY_MS + 3_600_000]
    with (
        RawReceiver() as hook,
        KeybrakeThread(tmp_path / "d", clock=lambda: now[0], alert_interval_s=0.05, alert_retry_base_s=0.05) as kb,
    ):
        kb.add_credential(fake_stripe.base_url)
        alert(kb, hook.url, thresholds=[50])
        key = kb.issue({"daily_usd_cap": 2, "total_usd_cap": 2}, expires_in="30d")

        def caps() -> list[tuple[str, str | None]]:
            return sorted((h.body["data"]["cap"], h.body["data"]["window_start"]) for h in hook.hits)

        def recorded() -> bool:
            """Every delivery's answer written: a claim still open when the test clock jumps a day
            looks lapsed and is sent again (at least once, same event id — seen on a loaded PG pass)."""
            with kb.admin() as c:
                return bool(c.get("/v1/alerts/deliveries", params={"state": "pending"}).json()["data"] == [])

        assert charge(kb, key) == 200
        wait_for(lambda: len(hook.hits) >= 2)
        wait_for(recorded)
        now[0] += DAY_MS
        assert charge(kb, key) == 200
        wait_for(lambda: len(hook.hits) >= 3)
        time.sleep(0.5)
        wait_for(recorded)
        day1, day2 = (now[0] - DAY_MS) // DAY_MS * DAY_MS, now[0] // DAY_MS * DAY_MS
        seen = [(h.event_id, h.body["data"]["cap"]) for h in hook.hits]
        assert caps() == [
            ("daily_usd_cap", rfc3339(day1)),
            ("daily_usd_cap", rfc3339(day2)),
            ("total_usd_cap", None),
        ], seen
        now[0] += 41 * DAY_MS

        async def purge() -> int:
            store = open_store(kb.settings.database_url, kb.settings.data_dir, migrate=False, clock=lambda: now[0])
            try:
                return await store.purge_fired(now[0] - 40 * DAY_MS)
            finally:
                await store.close()

        assert asyncio.run(purge()) >= 2  # the two daily marks went; the total cap's stays
        time.sleep(1.0)  # many scans
        assert len(hook.hits) == 3
