"""Retries are not new spend (CONTRACT §3.1.4)."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import stripe

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread


def _slow_first_request(fake: FakeStripe, seconds: float) -> threading.Thread:
    """The fake answers its first request after `seconds`, later ones at once."""
    fake.delay_seconds = seconds

    def watch() -> None:
        deadline = time.monotonic() + 10
        while not fake.requests and time.monotonic() < deadline:
            time.sleep(0.005)
        time.sleep(0.05)
        fake.delay_seconds = 0

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    return t


def test_sdk_retry_after_a_timeout_is_charged_once_and_linked(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    with KeybrakeThread(tmp_path / "d", upstream_timeout_s=0.5) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 10})
        sc = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=2)
        _slow_first_request(fake_stripe, 0.8)
        charge = sc.v1.charges.create({"amount": 600, "currency": "usd", "source": "tok_visa"})
        assert charge.amount == 600
        charges = [r for r in fake_stripe.requests if r.path == "/v1/charges"]
        assert len(charges) >= 2 and len({r.headers["idempotency-key"] for r in charges}) == 1
        assert len(fake_stripe.charges) == 1  # Stripe itself charged once

        rows = sorted(kb.audit(key_id=key["id"]), key=lambda r: r["id"])
        first, retries = rows[0], rows[1:]
        assert first["error_code"] == "upstream_timeout" and first["status"] == 504
        assert first["verdict"] == "allowed" and first["cost_usd"] == 6  # settled by the retry's answer
        assert first["settled_by"] == retries[-1]["id"]
        for r in retries:
            assert r["reserved_usd"] == 0 and r["cost_usd"] == 0 and r["metadata"]["retry_of"] == first["id"]
        with kb.admin() as c:
            usage = c.get(f"/v1/keys/{key['id']}").json()["usage"]["daily_usd"]
        assert usage["used"] == 6 and usage["reserved"] == 0  # the cap was charged once


def test_a_retry_of_a_request_still_in_flight_gets_409(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    headers = {"Authorization": f"Bearer {key['key']}", "Idempotency-Key": "order-77"}
    fake_stripe.hang = threading.Event()
    first: dict[str, httpx.Response] = {}
    t = threading.Thread(
        target=lambda: first.setdefault(
            "r",
            httpx.post(
                f"{kb.url}/stripe/v1/charges", data={"amount": 100, "currency": "usd"}, headers=headers, timeout=10
            ),
        )
    )
    t.start()
    deadline = time.monotonic() + 5
    while not fake_stripe.requests and time.monotonic() < deadline:
        time.sleep(0.01)
    started = time.monotonic()
    r = httpx.post(f"{kb.url}/stripe/v1/charges", data={"amount": 100, "currency": "usd"}, headers=headers)
    waited = time.monotonic() - started
    assert r.status_code == 409 and r.json()["error"]["code"] == "idempotency_in_flight"
    assert 1.5 < waited < 4  # it waited (up to 2 s) for the first request to finish, then gave up
    assert r.headers["stripe-should-retry"] == "true" and r.headers["retry-after"] == "1"
    fake_stripe.hang.set()
    t.join(10)
    assert first["r"].status_code == 200
    assert len(fake_stripe.requests) == 1


def test_same_key_different_body_is_new_spend(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 10})
    h = {"Authorization": f"Bearer {key['key']}", "Idempotency-Key": "order-1"}
    assert (
        httpx.post(f"{kb.url}/stripe/v1/charges", data={"amount": 100, "currency": "usd"}, headers=h).status_code == 200
    )
    r = httpx.post(f"{kb.url}/stripe/v1/charges", data={"amount": 200, "currency": "usd"}, headers=h)
    assert r.status_code == 400  # Stripe refuses the reuse; Keybrake reserved it as new and released it
    rows = sorted(kb.audit(key_id=key["id"]), key=lambda x: x["id"])
    assert rows[1]["reserved_usd"] == 2 and rows[1]["cost_usd"] == 0


def test_stripe_dedup_window_replays_a_repeated_charge(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """Two SDK calls with the same body (each with its own Idempotency-Key) inside the window: one charge."""
    key = kb.issue({"daily_usd_cap": 20, "dedup_window_seconds": 30})
    sc = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0)
    params = {"amount": 700, "currency": "usd", "source": "tok_visa", "customer": "cus_1"}
    first = sc.v1.charges.create(params)  # type: ignore[arg-type]
    second = sc.v1.charges.create(params)  # type: ignore[arg-type]
    assert first.id == second.id
    assert len([r for r in fake_stripe.requests if r.path == "/v1/charges"]) == 1
    other = sc.v1.charges.create({**params, "amount": 701})  # type: ignore[arg-type]
    assert other.id != first.id
    rows = {r["verdict"]: r for r in kb.audit(key_id=key["id"])}
    assert rows["deduplicated"]["cost_usd"] == 0 and rows["deduplicated"]["dedup_of"]
    assert kb.key(key["id"])["usage"]["daily_usd"]["used"] == 14.01
