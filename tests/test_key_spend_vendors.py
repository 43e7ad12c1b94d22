"""A key's `spent_usd` counts what `keybrake spend` counts for it, for every built-in vendor: a
Twilio send still at its estimate (its price not yet reconciled) read 0 on the key while the spend
report showed it (docs/api.md, the key object)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.postmark_server import DEFAULT_SERVER_TOKEN, FakePostmarkThread
from tests.fakes.resend_server import DEFAULT_API_KEY as RESEND_KEY
from tests.fakes.resend_server import FakeResendThread
from tests.fakes.segment_server import DEFAULT_WRITE_KEY, FakeSegmentThread
from tests.fakes.sendgrid_server import DEFAULT_API_KEY as SENDGRID_KEY
from tests.fakes.sendgrid_server import FakeSendGridThread
from tests.fakes.shopify_server import DEFAULT_TOKEN, FakeShopifyThread
from tests.fakes.stripe_server import FakeStripeThread
from tests.fakes.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioThread
from tests.harness import REAL_SECRET, KeybrakeThread
from tests.vendors.shopify_calls import REFUND, refund_input

Send = Callable[[str, dict[str, Any]], httpx.Response]  # (Keybrake's URL, the key) → the answer
EMAIL = {"From": "bot@mail.acme.io", "To": "a@example.com", "Subject": "hi", "TextBody": "hi"}


def _stripe(url: str, key: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{url}/stripe/v1/charges",
        data={"amount": "250", "currency": "usd", "source": "tok_visa"},
        headers={"Authorization": f"Bearer {key['key']}"},
    )


def _twilio(url: str, key: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{url}/twilio/2010-04-01/Accounts/{key['id']}/Messages.json",
        data={"To": "+14155550100", "From": "+14155550199", "Body": "hi"},
        auth=(key["id"], key["key"]),
    )


def _resend(url: str, key: dict[str, Any]) -> httpx.Response:
    body = {"from": "Acme <bot@mail.acme.io>", "to": ["a@example.com", "b@example.com"], "subject": "s", "html": "x"}
    return httpx.post(f"{url}/resend/emails", json=body, headers={"Authorization": f"Bearer {key['key']}"})


def _postmark(url: str, key: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/postmark/email", json=EMAIL, headers={"X-Postmark-Server-Token": key["key"]})


def _sendgrid(url: str, key: dict[str, Any]) -> httpx.Response:
    body = {
        "personalizations": [{"to": [{"email": "a@example.com"}]}],
        "from": {"email": "bot@mail.acme.io"},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "x"}],
    }
    return httpx.post(f"{url}/sendgrid/v3/mail/send", json=body, headers={"Authorization": f"Bearer {key['key']}"})


def _segment(url: str, key: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{url}/segment/v1/track", json={"userId": "u1", "event": "Order"}, auth=(key["key"], ""))


def _shopify(url: str, key: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{url}/shopify/admin/api/2025-07/graphql.json",
        json={"query": REFUND, "variables": refund_input("12.50"), "operationName": "Refund"},
        headers={"X-Keybrake-Key": key["key"]},
    )


# vendor → (its fake, the stored secret, one priced call)
VENDORS: dict[str, tuple[Callable[[], AbstractContextManager[Any]], Any, Send]] = {
    "stripe": (lambda: FakeStripeThread(secret=REAL_SECRET), REAL_SECRET, _stripe),
    "twilio": (
        FakeTwilioThread,
        {"account_sid": DEFAULT_ACCOUNT_SID, "auth_token": DEFAULT_AUTH_TOKEN},
        _twilio,
    ),
    "resend": (FakeResendThread, RESEND_KEY, _resend),
    "postmark": (FakePostmarkThread, DEFAULT_SERVER_TOKEN, _postmark),
    "sendgrid": (FakeSendGridThread, SENDGRID_KEY, _sendgrid),
    "segment": (FakeSegmentThread, DEFAULT_WRITE_KEY, _segment),
    "shopify": (FakeShopifyThread, DEFAULT_TOKEN, _shopify),
}


@pytest.fixture
def server(tmp_path: Path) -> Iterator[KeybrakeThread]:
    prices = {"segment": {"keybrake_segment_usd_per_event": Decimal("0.01")}}
    with KeybrakeThread(tmp_path / "data", vendor_settings=prices) as kb:  # reconciliation: every 60 s
        yield kb


@pytest.mark.parametrize("vendor", sorted(VENDORS))
def test_a_keys_spend_is_what_the_spend_report_counts_for_it(server: KeybrakeThread, vendor: str) -> None:
    fake_thread, secret, send = VENDORS[vendor]
    with fake_thread() as fake:
        server.add_credential(fake.base_url, name=vendor, secret=secret, vendor=vendor)
        key = server.issue({"daily_usd_cap": 100}, vendor=vendor, label=f"t:{vendor}")
        r = send(server.url, key)
        assert r.status_code < 300, r.text
    (row,) = server.audit(key_id=key["id"])
    assert row["cost_usd"] > 0, row  # a priced call, settled or at its estimate
    with server.admin() as c:
        report = c.get("/v1/spend", params={"group_by": "key", "since": int(time.time()) - 3600}).json()["data"]
    (mine,) = [g for g in report if g["group"] == key["id"]]
    spent = server.key(key["id"])["spent_usd"]
    assert spent == mine["gross_usd"] == row["cost_usd"], (vendor, spent, mine, row)
