"""`keybrake audit tail -f` and a row committed late: a request's audit id is minted when it
starts, but its row is written after its scope lookup (a GET to the vendor). An agent that sends
a slow-lookup request and, meanwhile, any fast one, pushes the follower's window past the first
row: a confirmed payment the operator watching the tail never sees."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.stripe_server.server import FakeStripeThread
from tests.harness import REAL_SECRET, KeybrakeThread
from tests.test_cli_audit_tail import Tail

pytestmark = pytest.mark.multiprocess


def test_a_row_written_after_a_slow_lookup_is_still_printed(tmp_path: Path) -> None:
    with FakeStripeThread(secret=REAL_SECRET) as fake, KeybrakeThread(tmp_path / "data") as kb:
        kb.add_credential(fake.base_url)
        direct = {"Authorization": f"Bearer {REAL_SECRET}"}
        pi = httpx.post(
            f"{fake.base_url}/v1/payment_intents",
            data={"amount": 500, "currency": "usd", "customer": "cus_A", "payment_method": "pm_card_visa"},
            headers=direct,
        ).json()
        key = kb.issue(
            {
                "customer_allowlist": ["cus_A"],
                "daily_usd_cap": 100,
                "allowed_endpoints": ["POST /v1/payment_intents/*/confirm"],
            }
        )
        h = {"Authorization": f"Bearer {key['key']}"}
        tail = Tail(tmp_path / "data", "-n", "0", "-f", "--interval", "0.2")
        try:
            assert tail.lines(1) == ["ts  id  key_id  method  path  verdict  status  cost_usd"]  # -n 0: the header
            assert tail.quiet(1.5) == []  # and nothing else
            fake.fake.delay_seconds = 3.0  # the vendor is slow: the scope lookup takes 3 s
            confirmed: list[httpx.Response] = []
            slow = threading.Thread(
                target=lambda: confirmed.append(
                    httpx.post(f"{kb.url}/stripe/v1/payment_intents/{pi['id']}/confirm", headers=h, timeout=30)
                )
            )
            slow.start()
            time.sleep(2.5)
            fast = httpx.get(f"{kb.url}/stripe/v1/customers", headers=h)  # refused at once, printed at once
            assert fast.status_code == 403
            slow.join(30)
            fake.fake.delay_seconds = 0.0
            out = tail.quiet(2.0)
        finally:
            tail.stop()
    assert confirmed and confirmed[0].status_code == 200, confirmed
    row_id = confirmed[0].headers["x-keybrake-request-id"]
    assert any(row_id in line for line in out), (row_id, out)
