"""The decision before forwarding, by tables: request + key + policy → refusal code, or the plan.

No server, no store, no sockets: each row runs the pure decisions of proxy/decide.py in the
shell's order (tests/proxy/build.py). End-to-end guarantees (SDKs through the proxy, caps under
concurrency, fail-closed, revocation) stay in the real-server suites.

Moved here from real-server tests that only checked a decision (every checked value kept):
test_proxy_stripe.py test_path_tricks_are_refused, test_customer_scope, test_account_scope,
test_param_rules_and_max_per_call, four rows of test_bad_bodies_get_clear_errors_and_nothing_is_forwarded
and the subscription half of test_unpriceable_endpoint_needs_max_usd_per_call;
test_proxy_twilio_spellings.py test_stripe_and_resend_case_variants_of_sends_are_refused;
test_proxy_resend.py test_broadcasts_are_guarded_in_every_write.
"""

from __future__ import annotations

import pytest

from keybrake.core.request import ProxyRequest
from keybrake.store.base import KeyRecord
from tests.proxy.build import CHARGE, KEY_ID, SENDER, SMS, USD, decide, email, key, refusal_of, request, twilio_send

pytestmark = pytest.mark.store_free

# (why, key, request, expected code, expected HTTP status)
REFUSALS: list[tuple[str, KeyRecord, ProxyRequest, str, int]] = [
    # -- routing and the one parse (moved from test_proxy_stripe / test_proxy_twilio_spellings)
    ("HEAD is not proxied", key(), request("HEAD", "/stripe/v1/balance"), "method_not_supported", 405),
    ("another vendor's prefix", key(), request("GET", "/twilio/v1/balance"), "vendor_mismatch", 403),
    *[
        (f"path trick {p}", key(allowed_endpoints=["GET /v1/customers/*"]), request("GET", p), code, status)
        for p, code, status in [
            ("/stripe/v1/customers/../charges", "path_invalid", 400),
            ("/stripe/v1/customers/%2e%2e/charges", "path_invalid", 400),
            ("/stripe/v1/customers%2Fcus_1", "path_invalid", 400),
            ("/stripe//v1/charges", "path_invalid", 400),
            ("/stripe/v1/customers/%252e%252e", "path_invalid", 400),
        ]
    ],
    *[
        (
            f"case variant {p}",
            key(daily_usd_cap=100 * USD, max_usd_per_call=50 * USD),
            request("POST", f"/stripe{p}", form={"amount": "1000000", "currency": "usd", "confirm": "true"}),
            "path_invalid",
            400,
        )
        for p in ("/v1/Charges", "/v1/PAYMENT_INTENTS", "/v1/payment_intents/pi_123/Confirm")
    ],
    *[
        (
            f"case variant {p}",
            key("resend", daily_usd_cap=USD, allowed_to_domains=["example.com"]),
            request("POST", f"/resend{p}", json_body=email("x@elsewhere.org", subject="s")),
            "path_invalid",
            400,
        )
        for p in ("/Emails", "/emails/Batch")
    ],
    # -- bodies (moved from test_bad_bodies_get_clear_errors_and_nothing_is_forwarded)
    (
        "a parameter sent twice",
        key(daily_usd_cap=100 * USD),
        request(
            "POST",
            "/stripe/v1/charges",
            body=b"amount=100&amount=999999&currency=usd",
            ctype="application/x-www-form-urlencoded",
        ),
        "param_ambiguous",
        400,
    ),
    (
        "JSON to Stripe",
        key(daily_usd_cap=100 * USD),
        request("POST", "/stripe/v1/charges", body=b'{"amount": 100}', ctype="application/json"),
        "unsupported_media_type",
        415,
    ),
    (
        "not UTF-8",
        key(daily_usd_cap=100 * USD),
        request(
            "POST", "/stripe/v1/charges", body=b"amount=%ff&currency=usd", ctype="application/x-www-form-urlencoded"
        ),
        "body_invalid",
        400,
    ),
    (
        "an unclosed bracket",
        key(daily_usd_cap=100 * USD),
        request("POST", "/stripe/v1/charges", body=b"a[b=1", ctype="application/x-www-form-urlencoded"),
        "body_invalid",
        400,
    ),
    (
        "a body on GET",
        key(),
        request("GET", "/stripe/v1/balance", body=b"a=1", ctype="application/x-www-form-urlencoded"),
        "body_invalid",
        400,
    ),
    (
        "Idempotency-Key too long",
        key(),
        request("POST", "/stripe/v1/customers", form={"email": "a@b.c"}, headers={"idempotency-key": "k" * 256}),
        "header_invalid",
        400,
    ),
    # -- endpoints
    (
        "endpoint not allowed",
        key(allowed_endpoints=["GET /v1/customers/*"]),
        request("POST", "/stripe/v1/charges", form=CHARGE),
        "endpoint_not_allowed",
        403,
    ),
    (
        "guarded without a literal pattern",
        key(allowed_endpoints=["* /v1/*"]),
        request("POST", "/stripe/v1/webhook_endpoints", form={"url": "https://x.io"}),
        "endpoint_guarded",
        403,
    ),
    *[
        (
            f"guarded broadcast {m} {p}",
            key("resend", allowed_to_domains=["example.com"], daily_usd_cap=USD, max_usd_per_call=10_000),
            request(
                m,
                f"/resend{p}",
                json_body={"audience_id": "aud_1", "from": SENDER, "subject": "hi", "html": "<p>x</p>", "send": True},
            ),
            code,
            status,
        )
        for m, p, code, status in [
            ("POST", "/broadcasts", "endpoint_guarded", 403),
            ("POST", "/broadcasts/bc_1/send", "endpoint_guarded", 403),
            ("PATCH", "/broadcasts/bc_1", "endpoint_guarded", 403),
            ("POST", "/Broadcasts", "endpoint_guarded", 403),
        ]
    ],
    # -- scope (moved from test_customer_scope / test_account_scope)
    (
        "another customer",
        key(customer_allowlist=["cus_ABC123"], daily_usd_cap=100 * USD),
        request("POST", "/stripe/v1/charges", form={**CHARGE, "customer": "cus_OTHER"}),
        "scope_violation",
        403,
    ),
    (
        "no customer",
        key(customer_allowlist=["cus_ABC123"], daily_usd_cap=100 * USD),
        request("POST", "/stripe/v1/charges", form=CHARGE),
        "scope_violation",
        403,
    ),
    (
        "an unscoped list",
        key(customer_allowlist=["cus_ABC123"], daily_usd_cap=100 * USD),
        request("GET", "/stripe/v1/customers"),
        "scope_violation",
        403,
    ),
    (
        "another account",
        key(account_allowlist=["acct_123"]),
        request("GET", "/stripe/v1/customers", headers={"stripe-account": "acct_999"}),
        "scope_violation",
        403,
    ),
    (
        "another context",
        key(account_allowlist=["acct_123"]),
        request("GET", "/stripe/v1/customers", headers={"stripe-context": "acct_999"}),
        "scope_violation",
        403,
    ),
    ("no account", key(account_allowlist=["acct_123"]), request("GET", "/stripe/v1/customers"), "scope_violation", 403),
    (
        "account and context differ",
        key(account_allowlist=["acct_123"]),
        request("GET", "/stripe/v1/customers", headers={"stripe-account": "acct_123", "stripe-context": "acct_999"}),
        "param_ambiguous",
        400,
    ),
    *[
        (
            f"Twilio destination {to}",
            key("twilio", allowed_to_prefixes=["+1"], default_calling_code="+1", daily_usd_cap=5 * USD),
            twilio_send({**SMS, "To": to}),
            "scope_violation",
            403,
        )
        for to in ("+44 20 7946 0958", "+442079460958", "0044 20 7946 0958", "whatsapp:+442079460958", "sip:a@b.c")
    ],
    (
        "Twilio: another account in the path",
        key("twilio", daily_usd_cap=5 * USD),
        twilio_send(SMS, account="AC" + "9" * 32),
        "scope_violation",
        403,
    ),
    (
        "Twilio: no To",
        key("twilio", daily_usd_cap=5 * USD),
        twilio_send({"From": SMS["From"], "Body": "x"}),
        "body_invalid",
        400,
    ),
    (
        "Twilio: JSON",
        key("twilio", daily_usd_cap=5 * USD),
        request("POST", f"/twilio/2010-04-01/Accounts/{KEY_ID}/Messages.json", json_body=SMS),
        "unsupported_media_type",
        415,
    ),
    (
        "Resend: a batch with one outside bcc",
        key("resend", daily_usd_cap=USD, allowed_to_domains=["example.com"]),
        request(
            "POST",
            "/resend/emails/batch",
            json_body=[email(f"u{i}@example.com") for i in range(9)] + [email("u9@example.com", bcc=["spy@evil.io"])],
        ),
        "scope_violation",
        403,
    ),
    (
        "Resend: form body",
        key("resend", daily_usd_cap=USD),
        request("POST", "/resend/emails", form={"to": "a@example.com"}),
        "unsupported_media_type",
        415,
    ),
    (
        "Resend: two addresses in one",
        key("resend", daily_usd_cap=USD),
        request("POST", "/resend/emails", json_body=email("a@example.com, b@example.com")),
        "param_ambiguous",
        400,
    ),
    (
        "Resend: not JSON",
        key("resend", daily_usd_cap=USD),
        request("POST", "/resend/emails", body=b"to=a@example.com", ctype="application/json"),
        "body_invalid",
        400,
    ),
    # -- parameter rules, per-call bound, pricing (moved from test_param_rules_and_max_per_call)
    (
        "currency outside param_rules",
        key(
            param_rules={"currency": {"in": ["usd"]}, "amount": {"max": 5000}},
            max_usd_per_call=40 * USD,
            daily_usd_cap=100 * USD,
        ),
        request("POST", "/stripe/v1/charges", form={"amount": "100", "currency": "eur"}),
        "param_not_allowed",
        403,
    ),
    (
        "amount over param_rules",
        key(
            param_rules={"currency": {"in": ["usd"]}, "amount": {"max": 5000}},
            max_usd_per_call=40 * USD,
            daily_usd_cap=100 * USD,
        ),
        request("POST", "/stripe/v1/charges", form={"amount": "5001", "currency": "usd"}),
        "param_not_allowed",
        403,
    ),
    (
        "over max_usd_per_call",
        key(max_usd_per_call=40 * USD, daily_usd_cap=100 * USD),
        request("POST", "/stripe/v1/charges", form={"amount": "4001", "currency": "usd"}),
        "amount_over_limit",
        403,
    ),
    (
        "unpriceable, no per-call bound",
        key(daily_usd_cap=100 * USD),
        request("POST", "/stripe/v1/subscriptions", form=[("customer", "cus_1"), ("items[0][price]", "price_1")]),
        "unpriceable_request",
        403,
    ),
    (
        "unpriceable, a $0 per-call bound",
        key(daily_usd_cap=0, max_usd_per_call=0),
        request("POST", "/stripe/v1/subscriptions", form=[("customer", "cus_1"), ("items[0][price]", "price_1")]),
        "unpriceable_request",
        403,
    ),
    (
        "a refund of a charge nobody knows",
        key(daily_usd_cap=100 * USD),
        request("POST", "/stripe/v1/refunds", form={"charge": "ch_x"}),
        "unpriceable_request",
        403,
    ),
    (
        "unknown currency",
        key(daily_usd_cap=100 * USD),
        request("POST", "/stripe/v1/charges", form={"amount": "100", "currency": "xyz"}),
        "currency_not_supported",
        403,
    ),
]


@pytest.mark.parametrize(("why", "k", "req", "code", "status"), REFUSALS, ids=[r[0] for r in REFUSALS])
def test_refusals(why: str, k: KeyRecord, req: ProxyRequest, code: str, status: int) -> None:
    denial = refusal_of(k, req)
    assert (denial.code, denial.status, denial.verdict) == (code, status, f"denied_{code}"), denial.message


# (key, request, words the agent's message must carry)
MESSAGES: list[tuple[KeyRecord, ProxyRequest, str]] = [
    (
        key(param_rules={"currency": {"in": ["usd"]}}),
        request("POST", "/stripe/v1/charges", form={"amount": "100", "currency": "eur"}),
        "param_rules.currency",
    ),
    (
        key(max_usd_per_call=40 * USD),
        request("POST", "/stripe/v1/charges", form={"amount": "4001", "currency": "usd"}),
        "$40.00",
    ),
    (
        key(daily_usd_cap=100 * USD),
        request("POST", "/stripe/v1/subscriptions", form={"customer": "cus_1"}),
        "max_usd_per_call",
    ),
    (
        key("resend", allowed_to_domains=["example.com"]),
        request("POST", "/resend/emails/batch", json_body=[email("u@example.com", bcc=["spy@evil.io"])]),
        "evil.io",
    ),
    (key("twilio"), twilio_send({"From": SMS["From"], "Body": "x"}), "'To'"),
    (key("resend"), request("POST", "/resend/emails", json_body={"from": SENDER, "subject": "x", "html": "y"}), "'to'"),
]


@pytest.mark.parametrize(("k", "req", "words"), MESSAGES, ids=[m[2] for m in MESSAGES])
def test_refusals_say_why(k: KeyRecord, req: ProxyRequest, words: str) -> None:
    assert words in refusal_of(k, req).message


def test_a_refusal_keeps_what_the_row_learnt() -> None:
    """A refused request's audit row names what was parsed before the refusal."""
    k = key(customer_allowlist=["cus_ABC123"])
    got, notes = decide(
        k,
        request(
            "POST",
            "/stripe/v1/charges",
            form={**CHARGE, "customer": "cus_OTHER"},
            headers={"idempotency-key": "idem-1"},
        ),
    )
    assert not isinstance(got, tuple) and got.code == "scope_violation"
    assert notes["idempotency_key"] == "idem-1" and notes["body_hash"] and notes["request_summary"]
    assert notes["path"] == "/v1/charges"


def test_the_row_names_the_canonical_spelling() -> None:
    """Every spelling the vendor accepts is one operation: the row sees the canonical path."""
    k = key("twilio", daily_usd_cap=5 * USD)
    _, notes = decide(k, request("POST", f"/twilio/2010-04-01/Accounts/{KEY_ID}/Messages", form=SMS))
    assert notes["path"] == f"/2010-04-01/Accounts/{KEY_ID}/Messages.json"
