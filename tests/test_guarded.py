"""Guarded endpoints and secret redaction (CONTRACT §2.2)."""

from __future__ import annotations

import httpx
import pytest
import stripe
from click.testing import CliRunner

from keybrake.cli import main
from keybrake.vendors import builtin_vendors
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread

# One concrete request per guarded Stripe pattern.
GUARDED_REQUESTS = [
    ("POST", "/v1/webhook_endpoints"),
    ("GET", "/v1/webhook_endpoints"),
    ("DELETE", "/v1/webhook_endpoints/we_1"),
    ("POST", "/v1/accounts"),
    ("POST", "/v1/accounts/acct_1"),
    ("DELETE", "/v1/accounts/acct_1"),
    ("POST", "/v1/accounts/acct_1/external_accounts"),
    ("GET", "/v1/accounts/acct_1/persons"),
    ("POST", "/v1/ephemeral_keys"),
    ("GET", "/v1/apps/secrets/find"),
    ("POST", "/v1/WEBHOOK_ENDPOINTS"),  # guarded matching ignores case
]


def test_every_guarded_pattern_has_a_request_here() -> None:
    stripe_vendor = builtin_vendors()["stripe"]
    for pattern in stripe_vendor.guarded:
        assert any(pattern.matches(m, tuple(p.strip("/").split("/"))) for m, p in GUARDED_REQUESTS), pattern.text


@pytest.mark.parametrize(
    "policy",
    [
        {},
        {"allowed_endpoints": ["* /v1/**"]},
        {"allowed_endpoints": ["* /**"]},
        {"allowed_endpoints": ["POST /v1/*", "GET /v1/*/*", "DELETE /v1/*/*", "* /v1/*/*/*", "GET /v1/apps/secrets/*"]},
    ],
)
def test_guarded_endpoints_need_a_literal_pattern(kb: KeybrakeThread, fake_stripe: FakeStripe, policy: dict) -> None:
    key = kb.issue({**policy, "max_usd_per_call": 1})
    for method, path in GUARDED_REQUESTS:
        r = httpx.request(method, f"{kb.url}/stripe{path}", headers={"Authorization": f"Bearer {key['key']}"})
        assert r.status_code == 403, (method, path, r.text)
        assert r.json()["error"]["code"] == "endpoint_guarded"
    assert fake_stripe.requests == []


def test_literal_pattern_admits_and_the_secret_is_redacted(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"allowed_endpoints": ["POST /v1/webhook_endpoints", "GET /v1/webhook_endpoints"]})
    sc = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0)
    created = sc.v1.webhook_endpoints.create({"url": "https://example.com/hook", "enabled_events": ["*"]})
    assert created.secret == "[redacted by keybrake]"
    assert created.url == "https://example.com/hook"
    row = kb.audit(key_id=key["id"])[0]
    assert row["redacted_fields"] == ["secret"] and row["endpoint"] == "POST /v1/webhook_endpoints"
    assert sc.v1.webhook_endpoints.list().data[0].id == created.id
    assert "whsec_" not in kb.logs.text()


def test_vendors_guarded_prints_the_lists() -> None:
    out = CliRunner().invoke(main, ["vendors", "guarded"])
    assert out.exit_code == 0
    assert "stripe\tPOST /v1/ephemeral_keys" in out.output and "stripe\t* /v1/apps/secrets/**" in out.output
