"""Fail closed: when the store cannot enforce, nothing is forwarded (DESIGN §2, CONTRACT §2.1)."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

import httpx
import stripe

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread


def test_a_store_that_cannot_write_gets_503_and_nothing_is_forwarded(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    with KeybrakeThread(tmp_path / "d", sqlite_busy_timeout_ms=300) as kb:
        kb.add_credential(fake_stripe.base_url)
        key = kb.issue({"daily_usd_cap": 10})
        sc = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0)
        sc.v1.customers.list()  # warm: the key snapshot is cached, the next lookups need no write
        blocker = sqlite3.connect(tmp_path / "d" / "keybrake.db", isolation_level=None)
        blocker.execute("BEGIN EXCLUSIVE")  # another process holds the write lock
        try:
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
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        # recovers by itself once the store is writable again
        assert sc.v1.charges.create({"amount": 100, "currency": "usd", "source": "tok_visa"}).amount == 100
