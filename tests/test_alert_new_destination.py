"""A new alert destination gets events from its creation on: thresholds crossed before it existed,
and any threshold of a revoked key, are never sent to it (docs/api.md, alerts)."""

from __future__ import annotations

import time
from pathlib import Path

from tests.fakes.receiver import ReceiverThread
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, wait_for
from tests.test_alerts import FAST, alert, charge, hook, posts

__all__ = ["hook"]  # the fixture, used by name


def test_a_new_destination_gets_no_burst_of_old_thresholds(
    tmp_path: Path, fake_stripe: FakeStripe, hook: ReceiverThread
) -> None:
    with KeybrakeThread(tmp_path / "d", **FAST) as kb:
        kb.add_credential(fake_stripe.base_url)
        live, gone = kb.issue({"daily_usd_cap": 10}), kb.issue({"daily_usd_cap": 10}, label="t:gone")
        for key in (live, gone):
            for _ in range(9):  # $9 of $10: past 50 % and 80 %
                assert charge(kb, key) == 200
        kb.admin().delete(f"/v1/keys/{gone['id']}", params={"reason": "done"})
        alert(kb, hook.base_url + "/new", events=["cap.threshold"])
        time.sleep(1.0)  # ten scans
        assert posts(hook.fake) == []  # nothing from before the destination, nothing of the revoked key
        assert charge(kb, live) == 200  # $10: crosses 100 % now
        (event,) = wait_for(lambda: posts(hook.fake, "cap.threshold"))
        assert event.json["data"]["id"] == live["id"] and event.json["data"]["threshold_pct"] == 100
        time.sleep(0.5)
        assert len(posts(hook.fake)) == 1


def test_a_revoked_keys_crossing_is_not_news_for_an_existing_destination(
    tmp_path: Path, fake_stripe: FakeStripe, hook: ReceiverThread
) -> None:
    with KeybrakeThread(tmp_path / "d", alert_interval_s=3600.0) as kb:  # no scan runs by itself
        kb.add_credential(fake_stripe.base_url)
        alert(kb, hook.base_url + "/old", events=["cap.threshold"])
        key = kb.issue({"daily_usd_cap": 10})
        for _ in range(6):
            assert charge(kb, key) == 200
        kb.admin().delete(f"/v1/keys/{key['id']}", params={"reason": "done"})
        time.sleep(0.3)
    with KeybrakeThread(tmp_path / "d", **FAST) as kb:  # its first scans see the key revoked
        time.sleep(1.0)
        assert posts(hook.fake, "cap.threshold") == []
