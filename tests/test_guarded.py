"""Guarded endpoints and secret redaction (docs/policy.md, guarded endpoints)."""

from __future__ import annotations

import stripe
from click.testing import CliRunner

from keybrake.cli import main
from keybrake.core.patterns import first_match
from keybrake.vendors import build_vendors
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
    stripe_vendor = build_vendors()["stripe"]
    for pattern in stripe_vendor.guarded:
        assert any(pattern.matches(m, tuple(p.strip("/").split("/"))) for m, p in GUARDED_REQUESTS), pattern.text


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
    assert "twilio\t* /2010-04-01/Accounts/*/Keys.json" in out.output
    assert "resend\tPOST|PATCH|PUT /broadcasts/**" in out.output
    assert "shopify\t* /admin/api/*/webhooks.json" in out.output
    assert "postmark\t* /server" in out.output and "sendgrid\t* /v3/api_keys/**" in out.output
    assert "sendgrid\tPOST|PATCH|PUT|DELETE /v3/mail_settings/**" in out.output
    assert "sendgrid\tPOST /v3/marketing/test/send_email" in out.output
    # stripe, twilio, resend, shopify, and the built-in definitions postmark.toml and sendgrid.toml
    assert (
        len(out.output.splitlines())
        == sum(len(v.guarded) for v in build_vendors().values())
        == 8 + 12 + 10 + 12 + 5 + 17
    )


# One concrete request per guarded Twilio and Resend pattern (docs/policy.md, guarded endpoints).
TWILIO_GUARDED = [
    ("GET", "/2010-04-01/Accounts.json"),
    ("GET", "/2010-04-01/Accounts/{sid}.json"),
    ("POST", "/2010-04-01/Accounts/{sid}/Keys.json"),
    ("DELETE", "/2010-04-01/Accounts/{sid}/Keys/SK123"),
    ("POST", "/2010-04-01/Accounts/{sid}/SigningKeys.json"),
    ("GET", "/2010-04-01/Accounts/{sid}/SigningKeys/SK123"),
    ("POST", "/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers.json"),
    ("POST", "/2010-04-01/Accounts/{sid}/IncomingPhoneNumbers/Local.json"),
    ("POST", "/2010-04-01/Accounts/{sid}/Applications.json"),
    ("POST", "/2010-04-01/Accounts/{sid}/Applications/AP1.json"),
    ("GET", "/2010-04-01/Accounts/{sid}/SIP/Domains.json"),
    ("DELETE", "/2010-04-01/Accounts/{sid}/Messages/SM1.json"),
]
RESEND_GUARDED = [
    ("GET", "/api-keys"),
    ("DELETE", "/api-keys/k1"),
    ("POST", "/domains"),
    ("PATCH", "/domains/d1"),
    ("POST", "/webhooks"),
    ("DELETE", "/webhooks/w1"),
    ("GET", "/oauth/grants"),
    ("POST", "/broadcasts"),
    ("POST", "/broadcasts/b1/send"),
    ("POST", "/contacts/imports"),
]


def test_every_twilio_and_resend_guarded_pattern_has_a_request_here() -> None:
    """Each request is refused in tests/proxy/test_decide_parse.py."""
    vendors = build_vendors()
    for vendor, cases in (("twilio", TWILIO_GUARDED), ("resend", RESEND_GUARDED)):
        patterns = {first_match(vendors[vendor].guarded, m, tuple(p.strip("/").split("/"))) for m, p in cases}
        assert None not in patterns and len(patterns) == len(vendors[vendor].guarded)
