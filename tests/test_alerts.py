"""Alerts through a durable outbox to loopback webhook and Slack-shaped receivers (docs/api.md, alerts)."""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.receiver import Receiver, ReceiverThread
from tests.fakes.stripe_server import FakeStripe, FakeStripeThread
from tests.harness import KeybrakeThread, wait_for

FORM = {"Content-Type": "application/x-www-form-urlencoded"}
FAST: dict[str, Any] = {"alert_interval_s": 0.1, "alert_retry_base_s": 0.1}


@pytest.fixture
def hook() -> Iterator[ReceiverThread]:
    with ReceiverThread() as t:
        yield t


@pytest.fixture
def slack() -> Iterator[ReceiverThread]:
    with ReceiverThread() as t:
        yield t


def alert(kb: KeybrakeThread, url: str, **body: Any) -> dict[str, Any]:
    with kb.admin() as c:
        r = c.post("/v1/alerts", json={"type": "webhook", "url": url, "events": ["cap.threshold"], **body})
        assert r.status_code == 201, r.text
        return r.json()  # type: ignore[no-any-return]


def charge(kb: KeybrakeThread, key: dict[str, Any], amount: int = 100) -> int:
    r = httpx.post(
        f"{kb.url}/stripe/v1/charges",
        content=f"amount={amount}&currency=usd&source=tok_visa".encode(),
        headers={**FORM, "Authorization": f"Bearer {key['key']}"},
    )
    return r.status_code


def posts(r: Receiver, kind: str | None = None) -> list[Any]:
    return [x for x in r.requests if x.method == "POST" and (kind is None or (x.json or {}).get("type") == kind)]


def verify(secret: str, headers: dict[str, str], body: bytes) -> bool:
    parts = dict(p.split("=", 1) for p in headers["x-keybrake-signature"].split(","))
    if abs(time.time() - int(parts["t"])) > 300:
        return False  # a receiver rejects old timestamps: no replays
    want = hmac.new(secret.encode(), f"{parts['t']}.".encode() + body, hashlib.sha256).hexdigest()
    return hmac.compare_digest(want, parts["v1"])


def test_thresholds_arrive_once_each_signed(
    tmp_path: Path, fake_stripe: FakeStripe, hook: ReceiverThread, slack: ReceiverThread
) -> None:
    with KeybrakeThread(tmp_path / "d", **FAST) as kb:
        kb.add_credential(fake_stripe.base_url)
        wh = alert(kb, hook.base_url + "/hooks/keybrake", events=["cap.threshold", "cap.hit", "key.revoked"])
        assert wh["secret"].startswith("whsec_kb_") and wh["url"].endswith("/…")
        alert(kb, slack.base_url + "/services/T000/B000/XXXX", type="slack")
        key = kb.issue({"daily_usd_cap": 10})
        for _ in range(10):
            assert charge(kb, key) == 200
            time.sleep(0.05)
        assert charge(kb, key) == 429  # cap.hit
        wait_for(lambda: len(posts(hook.fake, "cap.threshold")) == 3 and posts(hook.fake, "cap.hit"))
        time.sleep(0.5)  # more scans: nothing fires twice
        thresholds = posts(hook.fake, "cap.threshold")
        assert sorted(x.json["data"]["threshold_pct"] for x in thresholds) == [50, 80, 100]
        for x in thresholds:
            assert verify(wh["secret"], x.headers, x.body)
            assert x.json["data"]["scope"] == "key" and x.json["data"]["id"] == key["id"]
            assert x.json["id"].startswith("evt_")
        assert not verify("whsec_kb_wrong", thresholds[0].headers, thresholds[0].body)
        assert not verify(wh["secret"], thresholds[0].headers, thresholds[0].body + b" ")
        (hit,) = posts(hook.fake, "cap.hit")
        assert hit.json["data"]["name"] == "daily_usd_cap"
        # money is a JSON number in every event (newcomer: cap.threshold had "limit": "10")
        for x in thresholds:
            d = x.json["data"]
            assert d["limit"] == 10 and type(d["limit"]) is int and type(d["used"]) in (int, float), d
            assert d["used"] >= d["threshold_pct"] / 10 and d["unit"] == "usd"
        assert hit.json["data"]["limit_usd"] == 10 and type(hit.json["data"]["limit_usd"]) is int
        texts = [x.json["text"] for x in posts(slack.fake)]
        assert len(texts) == 3 and all(key["id"] in t and "daily_usd_cap" in t for t in texts)

        kb.admin().delete(f"/v1/keys/{key['id']}", params={"reason": "done"})
        revoked = wait_for(lambda: posts(hook.fake, "key.revoked"))
        assert revoked[0].json["data"]["reason"] == "done"
        with kb.admin() as c:
            deliveries = c.get("/v1/alerts/deliveries").json()["data"]
        assert len(deliveries) == 8 and {d["state"] for d in deliveries} == {"delivered"}
        assert all(d["response_status"] == 200 for d in deliveries)


def test_a_receiver_that_is_down_gets_the_alert_after_retries(
    tmp_path: Path, fake_stripe: FakeStripe, hook: ReceiverThread
) -> None:
    hook.fake.fail_next(3)
    with KeybrakeThread(tmp_path / "d", **FAST) as kb:
        kb.add_credential(fake_stripe.base_url)
        alert(kb, hook.base_url + "/h", thresholds=[50])
        key = kb.issue({"daily_usd_cap": 2})
        assert charge(kb, key) == 200
        with kb.admin() as c:
            done = wait_for(
                lambda: [d for d in c.get("/v1/alerts/deliveries").json()["data"] if d["state"] == "delivered"]
            )
        assert done[0]["attempts"] == 4 and done[0]["response_status"] == 200
        assert len(posts(hook.fake)) == 4
        bodies = {x.body for x in posts(hook.fake)}
        assert len(bodies) == 1  # the same event, retried


def test_a_restart_does_not_lose_a_pending_alert(tmp_path: Path, fake_stripe: FakeStripe, hook: ReceiverThread) -> None:
    hook.fake.fail_next(1000)  # down for now
    with KeybrakeThread(tmp_path / "d", **FAST) as kb:
        kb.add_credential(fake_stripe.base_url)
        alert(kb, hook.base_url + "/h", thresholds=[50])
        key = kb.issue({"daily_usd_cap": 2})
        assert charge(kb, key) == 200
        wait_for(lambda: posts(hook.fake))  # tried at least once, failed
    hook.fake.next_status.clear()  # the receiver is back while Keybrake is stopped
    before = len(posts(hook.fake))
    with KeybrakeThread(tmp_path / "d", **FAST) as kb:
        ok = wait_for(lambda: [x for x in posts(hook.fake)[before:]])
        assert ok[0].json["type"] == "cap.threshold"
        with kb.admin() as c:
            assert c.get("/v1/alerts/deliveries").json()["data"][0]["state"] == "delivered"


def test_alert_validation(kb: KeybrakeThread) -> None:
    with kb.admin() as c:
        for body in (
            {"type": "email", "url": "https://example.com/h", "events": ["cap.hit"]},
            {"type": "webhook", "url": "ftp://example.com/h", "events": ["cap.hit"]},
            {"type": "webhook", "url": "http://example.com/h", "events": ["cap.hit"]},
            {"type": "webhook", "url": "https://u:p@example.com/h", "events": ["cap.hit"]},
            {"type": "webhook", "url": "https://example.com/h", "events": ["money.spent"]},
            {"type": "webhook", "url": "https://example.com/h", "events": []},
            {"type": "webhook", "url": "https://example.com/h", "events": ["cap.threshold"], "thresholds": [0]},
        ):
            assert c.post("/v1/alerts", json=body).status_code == 422, body
        made = c.post("/v1/alerts", json={"type": "webhook", "url": "https://example.com/x/secret-path",
                                           "events": ["spend.anomaly"]}).json()  # fmt: skip
        assert made["anomaly_factor"] == 3 and made["thresholds"] == [50, 80, 100]
        listed = c.get("/v1/alerts").json()["data"]
        assert listed[0]["id"] == made["id"] and "secret" not in listed[0] and "secret-path" not in str(listed)
        assert c.delete(f"/v1/alerts/{made['id']}").json()["deleted"] is True
        assert c.delete(f"/v1/alerts/{made['id']}").status_code == 404


def test_anomaly_fires_on_a_spike_not_on_steady_traffic_and_other_events(
    tmp_path: Path, fake_stripe: FakeStripe, hook: ReceiverThread
) -> None:
    hour = 3_600_000
    now = [1_795_000_000_000 - 1_795_000_000_000 % hour + 60_000]
    events = ["spend.anomaly", "key.expired", "secret.exposed", "credential.rejected"]
    with KeybrakeThread(tmp_path / "d", clock=lambda: now[0], alert_interval_s=0.05, alert_retry_base_s=0.1) as kb:
        kb.add_credential(fake_stripe.base_url)
        alert(kb, hook.base_url + "/h", events=events, anomaly_factor=3)
        key = kb.issue({"daily_usd_cap": 10_000}, label="tenant-x:agent:1", expires_in="7d")
        short = kb.issue({"daily_usd_cap": 1}, label="tenant-y:agent:2", expires_in="90m")
        for _ in range(24):  # a steady day: 6 charges an hour
            for _ in range(6):
                assert charge(kb, key) == 200
            now[0] += hour
        for _ in range(6):
            assert charge(kb, key) == 200
        time.sleep(1.0)  # several anomaly scans over steady traffic
        assert not posts(hook.fake, "spend.anomaly")
        expired = wait_for(lambda: posts(hook.fake, "key.expired"))
        assert expired[0].json["data"]["key_id"] == short["id"]

        now[0] += hour  # the spike: 40 charges in one hour
        for _ in range(40):
            assert charge(kb, key) == 200
        spikes = wait_for(lambda: len(posts(hook.fake, "spend.anomaly")) >= 2 and posts(hook.fake, "spend.anomaly"))
        subjects = {(x.json["data"]["scope"], x.json["data"]["id"]) for x in spikes}
        assert subjects == {("key", key["id"]), ("label_prefix", "tenant-x:")}
        assert all(x.json["data"]["requests"] > 3 * 6 for x in spikes)  # fired once over k × the usual hour
        time.sleep(0.5)
        assert len(posts(hook.fake, "spend.anomaly")) == 2  # once per hour per subject

        leaked = "sk_live_" + "A" * 24
        httpx.get(f"{kb.url}/stripe/v1/balance", headers={"Authorization": f"Bearer {leaked}"})
        exposed = wait_for(lambda: posts(hook.fake, "secret.exposed"))
        assert exposed[0].json["data"]["secret_prefix"] == "sk_live_" and leaked not in exposed[0].body.decode()

    with (
        FakeStripeThread(secret="sk_test_another_secret_0000") as other,
        KeybrakeThread(tmp_path / "e", alert_interval_s=0.05, alert_retry_base_s=0.1) as kb2,
    ):
        kb2.add_credential(other.base_url)  # the fake refuses this secret: 401
        alert(kb2, hook.base_url + "/h2", events=["credential.rejected"])
        key2 = kb2.issue({"daily_usd_cap": 1})
        r = httpx.get(f"{kb2.url}/stripe/v1/balance", headers={"Authorization": f"Bearer {key2['key']}"})
        assert r.status_code == 502
        rejected = wait_for(lambda: posts(hook.fake, "credential.rejected"))
        assert rejected[0].json["data"] == {"credential": "default", "vendor": "stripe", "key_id": key2["id"]}
