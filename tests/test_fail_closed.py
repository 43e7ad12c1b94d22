"""Fail closed: when the store cannot enforce, nothing is forwarded (DESIGN §2, docs/errors.md)."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest
import stripe

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread
from tests.waits import wait_until


@pytest.mark.timing
def test_a_store_that_cannot_write_gets_503_and_nothing_is_forwarded(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    with KeybrakeThread(tmp_path / "d", sqlite_busy_timeout_ms=300, pg_statement_timeout_ms=300) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 10})
        sc = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0)
        sc.v1.customers.list()  # warm: the key snapshot is cached, the next lookups need no write
        with kb.write_lock_held():  # another process holds the write lock
            before = len(fake_stripe.requests)
            started = time.monotonic()
            r = httpx.post(
                f"{kb.url}/stripe/v1/charges",
                data={"amount": 100, "currency": "usd"},
                headers={"Authorization": f"Bearer {key['key']}"},
            )
            assert time.monotonic() - started < 3
            assert r.status_code == 503
            body = r.json()["error"]
            assert body["code"] == "enforcement_unavailable" and "nothing was forwarded" in body["message"]
            assert r.headers["stripe-should-retry"] == "true" and r.headers["retry-after"] == "1"
            assert len(fake_stripe.requests) == before
            assert any("enforcement unavailable" in line for line in kb.logs.lines)
        # recovers by itself once the store is writable again
        assert sc.v1.charges.create({"amount": 100, "currency": "usd", "source": "tok_visa"}).amount == 100


def test_enforcement_unavailable_alert_from_memory_then_recovered(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    from tests.fakes.receiver import ReceiverThread

    with (
        ReceiverThread() as hook,
        KeybrakeThread(
            tmp_path / "d",
            sqlite_busy_timeout_ms=200,
            pg_statement_timeout_ms=200,
            alert_interval_s=0.1,
            alert_retry_base_s=0.1,
        ) as kb,
    ):
        kb.add_credential(fake_stripe.base_url)
        with kb.admin() as c:
            events = ["enforcement.unavailable", "enforcement.recovered"]
            made = c.post("/v1/alerts", json={"type": "webhook", "url": hook.base_url + "/h", "events": events})
            assert made.status_code == 201
        key = kb.issue({"daily_usd_cap": 10})
        assert kb.app is not None
        alerts = kb.app.alerts
        wait_until(  # the alert worker has read the destinations into memory
            lambda: made.json()["id"] in {d.id for d in alerts.known}, "the alert scan to load the destination"
        )
        with kb.write_lock_held():
            for _ in range(3):  # three failures, one alert (at most one per 5 minutes)
                r = httpx.post(
                    f"{kb.url}/stripe/v1/charges",
                    data={"amount": 100, "currency": "usd"},
                    headers={"Authorization": f"Bearer {key['key']}"},
                )
                assert r.status_code == 503
            wait_until(lambda: bool(hook.fake.requests), "the enforcement.unavailable alert, sent from memory")
        wait_until(lambda: len(hook.fake.requests) >= 2, "the enforcement.recovered alert")
        types = [r.json["type"] for r in hook.fake.requests]
        assert types == ["enforcement.unavailable", "enforcement.recovered"]
