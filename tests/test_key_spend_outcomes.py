"""A key's `spent_usd` (settled + held) against `GET /v1/spend` and the audit rows, for each
outcome of a priced Stripe call: a 4xx (released), a 5xx (outcome unknown: held), a timeout, an
idempotent replay and a repeat of a settled call."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.stripe_server import FakeStripeThread
from tests.harness import REAL_SECRET, KeybrakeThread

DECLINED = {"error": {"type": "card_error", "code": "card_declined", "message": "declined"}}
BOOM = {"error": {"type": "api_error", "message": "boom"}}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KeybrakeThread]:
    with KeybrakeThread(tmp_path / "data") as kb:
        yield kb


def _charge(kb: KeybrakeThread, key: dict[str, Any], idem: str | None = None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key['key']}", **({"Idempotency-Key": idem} if idem else {})}
    data = {"amount": "250", "currency": "usd", "source": "tok_visa"}
    return httpx.post(f"{kb.url}/stripe/v1/charges", data=data, headers=headers, timeout=30)


@pytest.mark.parametrize("outcome", ["ok", "declined_402", "server_500", "replay", "ok_then_500_retry"])
def test_spent_usd_spend_report_and_audit_agree(server: KeybrakeThread, outcome: str) -> None:
    with FakeStripeThread(secret=REAL_SECRET) as t:
        server.add_credential(t.base_url)
        key = server.issue({"daily_usd_cap": 100})
        if outcome == "declined_402":
            t.fake.next_status.append((402, DECLINED))
            _charge(server, key)
        elif outcome == "server_500":
            t.fake.next_status.append((500, BOOM))
            _charge(server, key)
        elif outcome == "replay":
            assert _charge(server, key, "idem-1").status_code == 200
            assert _charge(server, key, "idem-1").status_code == 200
        elif outcome == "ok_then_500_retry":
            t.fake.next_status.append((500, BOOM))
            _charge(server, key, "idem-2")
            assert _charge(server, key, "idem-2").status_code == 200  # the retry the SDK would make
        else:
            assert _charge(server, key).status_code == 200
    rows = server.audit(key_id=key["id"])
    audit_total = sum(r["cost_usd"] for r in rows)
    with server.admin() as c:
        report = c.get("/v1/spend", params={"group_by": "key", "since": int(time.time()) - 3600}).json()["data"]
    gross = next((g["gross_usd"] for g in report if g["group"] == key["id"]), 0)
    spent = server.key(key["id"])["spent_usd"]
    assert spent == gross == audit_total, (outcome, spent, gross, [(r["verdict"], r["cost_usd"]) for r in rows])
