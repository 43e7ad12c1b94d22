"""One parse: one name, one value, one shape — regressions through raw HTTP against a running
Keybrake and the fake vendors (which read parameters as the vendors do, see
tests/fakes/reference_parsers.py). The kind is generated in tests/vendors/test_one_parse_props.py."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.fakes.resend_server import DEFAULT_API_KEY, FakeResend, FakeResendThread
from tests.fakes.stripe_server import FakeStripe
from tests.fakes.twilio_server import DEFAULT_ACCOUNT_SID, DEFAULT_AUTH_TOKEN, FakeTwilioThread
from tests.harness import KeybrakeThread

FORM = "application/x-www-form-urlencoded"


def _post(kb: KeybrakeThread, key: dict[str, Any], path: str, body: bytes, query: str = "") -> httpx.Response:
    url = f"{kb.url}/stripe{path}" + (f"?{query}" if query else "")
    return httpx.post(url, content=body, headers={"Authorization": f"Bearer {key['key']}", "Content-Type": FORM})


def _denied(kb: KeybrakeThread, key: dict[str, Any], r: httpx.Response, code: str) -> None:
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == code
    assert kb.audit(key_id=key["id"])[0]["verdict"] == f"denied_{code}"


@pytest.mark.parametrize(
    ("body", "query"),
    [
        (b"amount[]=100&amount=99999&currency=usd&source=tok_visa", ""),  # the issue's example
        (b"amount=99999&amount[]=100&currency=usd&source=tok_visa", ""),  # order reversed
        (b"amount[]=100&currency=usd&source=tok_visa", "amount=99999"),  # split over query and body
        (b"amount=99999&currency=usd&source=tok_visa", "amount[]=100"),
        (b"amount[0]=100&amount=99999&currency=usd&source=tok_visa", ""),  # an index
        (b"amount=100&currency=usd&source=tok_visa&amount[x]=99999", ""),  # a value and a parent
        (b"amount=100&currency=usd&source=tok_visa& amount=99999", ""),  # Rack eats spaces after '&'
    ],
)
def test_an_amount_in_two_shapes_is_refused_and_nothing_is_charged(
    kb: KeybrakeThread, fake_stripe: FakeStripe, body: bytes, query: str
) -> None:
    key = kb.issue({"daily_usd_cap": 10, "max_usd_per_call": 5, "allowed_endpoints": ["POST /v1/charges"]})
    r = _post(kb, key, "/v1/charges", body, query)
    _denied(kb, key, r, "param_ambiguous")
    assert "amount" in r.json()["error"]["message"]
    assert fake_stripe.requests == [] and fake_stripe.charges == {}
    assert kb.key(key["id"])["usage"]["daily_usd"]["used"] == 0


def test_the_plain_shape_still_charges_what_was_reserved(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 10, "max_usd_per_call": 5, "allowed_endpoints": ["POST /v1/charges"]})
    r = _post(kb, key, "/v1/charges", b"amount=100&currency=usd&source=tok_visa")
    assert r.status_code == 200 and r.json()["amount"] == 100
    assert kb.audit(key_id=key["id"])[0]["cost_usd"] == 1


def test_a_get_body_is_not_scope_evidence(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"customer_allowlist": ["cus_A"], "allowed_endpoints": ["GET /v1/charges"]})
    bearer = {"Authorization": f"Bearer {key['key']}"}
    r = httpx.request(
        "GET", f"{kb.url}/stripe/v1/charges", content=b"customer=cus_A", headers={**bearer, "Content-Type": FORM}
    )
    _denied(kb, key, r, "body_invalid")
    assert fake_stripe.requests == []
    deleted = httpx.request("DELETE", f"{kb.url}/stripe/v1/customers/cus_A", content=b"x=1", headers=bearer)
    assert deleted.status_code == 400 and fake_stripe.requests == []
    ok = httpx.get(f"{kb.url}/stripe/v1/charges", params={"customer": "cus_A"}, headers=bearer)
    assert ok.status_code == 200 and len(fake_stripe.requests) == 1  # the query string is the way


# --- Twilio ------------------------------------------------------------------------------------


@pytest.fixture
def twilio_kb(tmp_path: Path) -> Iterator[tuple[KeybrakeThread, FakeTwilioThread]]:
    with FakeTwilioThread() as fake, KeybrakeThread(tmp_path / "data") as kb:
        secret = {"account_sid": DEFAULT_ACCOUNT_SID, "auth_token": DEFAULT_AUTH_TOKEN}
        kb.add_credential(fake.base_url, name="twilio", secret=secret, vendor="twilio")
        yield kb, fake


@pytest.mark.parametrize(
    ("body", "query"),
    [
        (b"To[]=%2B88200000001&To=%2B14155550100&From=%2B14155550199&Body=hi", ""),
        (b"To=%2B14155550100&To[]=%2B88200000001&From=%2B14155550199&Body=hi", ""),
        (b"to=%2B88200000001&To=%2B14155550100&From=%2B14155550199&Body=hi", ""),
        (b"To=%2B14155550100&+To=%2B88200000001&From=%2B14155550199&Body=hi", ""),
        (b"To[0]=%2B88200000001&From=%2B14155550199&Body=hi", "To=%2B14155550100"),
        (b"To=%2B88200000001&From=%2B14155550199&Body=hi", "To=%2B14155550100"),
    ],
)
def test_twilio_destination_collisions_are_refused(
    twilio_kb: tuple[KeybrakeThread, FakeTwilioThread], body: bytes, query: str
) -> None:
    kb, fake = twilio_kb
    key = kb.issue({"allowed_to_prefixes": ["+1"], "daily_usd_cap": 1}, vendor="twilio", label="t")
    url = f"{kb.url}/twilio/2010-04-01/Accounts/{key['id']}/Messages.json" + (f"?{query}" if query else "")
    r = httpx.post(url, content=body, headers={"Content-Type": FORM}, auth=(key["id"], key["key"]))
    assert r.status_code == 400, r.text
    code = r.json()["details"]["keybrake_code"]
    assert code in ("param_ambiguous", "body_invalid")
    assert kb.audit(key_id=key["id"])[0]["verdict"] == f"denied_{code}"
    assert fake.fake.requests == [] and fake.fake.messages == {}


# --- Resend ------------------------------------------------------------------------------------


@pytest.fixture
def resend_kb(tmp_path: Path) -> Iterator[tuple[KeybrakeThread, FakeResend]]:
    with FakeResendThread() as t, KeybrakeThread(tmp_path / "data") as kb:
        kb.add_credential(t.fake.base_url, name="resend", secret=DEFAULT_API_KEY, vendor="resend")
        yield kb, t.fake


@pytest.mark.parametrize(
    "body",
    [
        b'{"from": "bot@acme.io", "to": "a@example.com", "bcc ": "spy@evil.io", "subject": "x", "html": "y"}',
        b'{"from": "bot@acme.io", "to": "a@example.com", "To": "spy@evil.io", "subject": "x", "html": "y"}',
        b'{"from": "bot@acme.io", "To": "spy@evil.io", "subject": "x", "html": "y"}',
        b'[{"from": "bot@acme.io", "to": "a@example.com", "subject": "x", "html": "y", "\\u200bbcc": "s@evil.io"}]',
    ],
)
def test_resend_look_alike_keys_are_refused(resend_kb: tuple[KeybrakeThread, FakeResend], body: bytes) -> None:
    kb, fake = resend_kb
    key = kb.issue({"allowed_to_domains": ["example.com"], "daily_usd_cap": 1}, vendor="resend", label="m")
    path = "/emails/batch" if body.startswith(b"[") else "/emails"
    r = httpx.post(
        f"{kb.url}/resend{path}",
        content=body,
        headers={"Authorization": f"Bearer {key['key']}", "Content-Type": "application/json"},
    )
    assert r.status_code == 400 and r.json()["name"] == "body_invalid", r.text
    assert kb.audit(key_id=key["id"])[0]["verdict"] == "denied_body_invalid"
    assert fake.requests == [] and fake.emails == {}


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Bcc": "spy@evil.io"}, 403),
        ({" bcc ": "spy@evil.io"}, 400),  # refused already as a JSON key with blanks
        ({"Resent-To": "spy@evil.io"}, 403),
        ({"From": "ceo@bank.example"}, 403),
        ({"X-Note": "ok\r\nBcc: spy@evil.io"}, 400),
        ({"X-Count": 5}, 400),
        ("Bcc: spy@evil.io", 400),
    ],
)
def test_resend_custom_headers_cannot_add_recipients(
    resend_kb: tuple[KeybrakeThread, FakeResend], headers: object, status: int
) -> None:
    """Resend's `headers` adds custom headers to the email: an address header there would send to
    (or as) someone `to`/`cc`/`bcc`/`from` scope never saw, and uncounted."""
    kb, fake = resend_kb
    key = kb.issue({"allowed_to_domains": ["example.com"], "daily_usd_cap": 1}, vendor="resend", label="m")
    email = {"from": "bot@acme.io", "to": "a@example.com", "subject": "x", "html": "y", "headers": headers}
    auth = {"Authorization": f"Bearer {key['key']}"}
    for path, body in (("/emails", email), ("/emails/batch", [email])):
        r = httpx.post(f"{kb.url}/resend{path}", json=body, headers=auth)
        assert r.status_code == status, r.text
    ok = httpx.post(f"{kb.url}/resend/emails", json={**email, "headers": {"X-Entity-Ref-ID": "123"}}, headers=auth)
    assert ok.status_code == 200
    assert len([r for r in fake.requests if r.method == "POST"]) == 1
