"""cap.hit's fire-once rule: once per cap, window and usage level (docs/api.md, alerts)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st

from keybrake.jobs.alert_format import hit_level
from tests.fakes.receiver import ReceiverThread
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, examples

FORM = {"Content-Type": "application/x-www-form-urlencoded"}


def charge(kb: KeybrakeThread, key: dict[str, str], cents: int) -> httpx.Response:
    return httpx.post(
        f"{kb.url}/stripe/v1/charges",
        content=f"amount={cents}&currency=usd&source=tok_visa".encode(),
        headers={**FORM, "Authorization": f"Bearer {key['key']}"},
        timeout=30,
    )


def test_one_oversized_request_does_not_spend_the_budgets_cap_hit_for_the_day(
    tmp_path: Path, fake_stripe: FakeStripe
) -> None:
    """Red team: $1,000 against a $10 daily budget ($0 used, refused) fired cap.hit and spent its
    mark; when an honest key really used the $10 up, no alert. Now both are sent."""
    with ReceiverThread() as hook:
        with KeybrakeThread(tmp_path / "d", alert_interval_s=0.05, alert_retry_base_s=0.1) as kb:
            kb.add_credential(fake_stripe.base_url)
            with kb.admin() as c:
                r = c.post("/v1/alerts", json={"type": "webhook", "url": hook.base_url + "/h", "events": ["cap.hit"]})
                assert r.status_code == 201, r.text
                r = c.post(
                    "/v1/budgets", json={"name": "t", "scope": {"label_prefix": "tenant-a:"}, "daily_usd_cap": 10}
                )
                assert r.status_code == 201, r.text
            evil = kb.issue({"daily_usd_cap": 1000}, label="tenant-a:injected")
            honest = kb.issue({"daily_usd_cap": 1000}, label="tenant-a:billing")
            assert charge(kb, evil, 100_000).status_code == 429  # $1,000 against $10, $0 used
            assert charge(kb, evil, 100_000).status_code == 429  # the same level again: no second alert
            for _ in range(10):
                assert charge(kb, honest, 100).status_code == 200
            assert charge(kb, honest, 100).status_code == 429  # really used up
            assert charge(kb, honest, 100).status_code == 429  # already reported
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                hits = [x.json["data"] for x in hook.fake.requests if (x.json or {}).get("type") == "cap.hit"]
                if len(hits) >= 2:
                    break
                time.sleep(0.05)
            time.sleep(0.3)
            hits = [x.json["data"] for x in hook.fake.requests if (x.json or {}).get("type") == "cap.hit"]
    got = sorted((h["reached"], h["used_usd"], h["requested_usd"]) for h in hits)
    assert got == [(False, 0, 1000), (True, 10, 1)], hits
    assert {h["scope"] for h in hits} == {"budget"} and all(h["limit_usd"] == 10 for h in hits)


@settings(max_examples=examples(500), deadline=None)
@given(st.integers(0, 10**12), st.integers(0, 10**12), st.integers(0, 10**12))
def test_a_refusal_at_a_higher_usage_always_has_a_level_not_yet_reported(limit: int, a: int, b: int) -> None:
    """Levels are ordered by usage: a refusal after more was used never shares a lower one's mark
    unless both are in the same tenth (or both at the limit); the cap really used up is "reached"."""
    lo, hi = sorted((a, b))
    order = [str(i) for i in range(10)] + ["reached"]
    assert order.index(hit_level(lo, limit)) <= order.index(hit_level(hi, limit))
    assert (hit_level(hi, limit) == "reached") == (hi >= limit)
    if limit and hi < limit and hit_level(lo, limit) == hit_level(hi, limit):
        assert hi * 10 // limit == lo * 10 // limit
