"""A new alert destination is seeded with the thresholds already crossed when it is created, so
it never gets old news. A reservation in flight at that moment is not spend: if it is released (a
4xx, nothing charged), a real crossing of the same threshold later in the window is news."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from tests.fakes.receiver import ReceiverThread
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, wait_for
from tests.test_alerts import FAST, alert, charge, hook, posts

__all__ = ["hook"]  # the fixture, used by name

DECLINED = {"error": {"type": "card_error", "code": "card_declined", "message": "Your card was declined."}}


def test_a_released_reservation_at_creation_does_not_swallow_a_later_real_crossing(
    tmp_path: Path, fake_stripe: FakeStripe, hook: ReceiverThread
) -> None:
    # Scans count held money too (an 80 % alert while $9 is reserved is by design): the scan must
    # not run between the destination's creation and the release, so scans here are 2 s apart,
    # not FAST's 0.1 s (a busy machine stretched that gap past 0.1 s).
    with KeybrakeThread(tmp_path / "d", **{**FAST, "alert_interval_s": 2.0}) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 10})
        fake_stripe.hang = threading.Event()
        fake_stripe.next_status.append((402, DECLINED))
        answers: list[int] = []

        def in_flight() -> None:
            answers.append(charge(kb, key, 900))  # $9 of $10 reserved while the vendor thinks

        t = threading.Thread(target=in_flight)
        t.start()
        wait_for(lambda: fake_stripe.requests)  # reserved and forwarded
        alert(kb, hook.base_url + "/new", events=["cap.threshold"])
        fake_stripe.hang.set()
        t.join(30)
        assert answers == [402]  # declined: the $9 is released, nothing was spent
        fake_stripe.hang = None
        time.sleep(2.5)  # at least one scan after the release
        assert posts(hook.fake, "cap.threshold") == []
        assert charge(kb, key, 900) == 200  # now $9 of $10 is really spent: 50 % and 80 % crossed
        got = wait_for(lambda: [e for e in posts(hook.fake, "cap.threshold") if e.json["data"]["threshold_pct"] == 80])
        assert got and got[0].json["data"]["id"] == key["id"]
