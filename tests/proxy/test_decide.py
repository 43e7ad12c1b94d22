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

from typing import Any

import pytest

from keybrake.core.ledger import LedgerEntry
from keybrake.core.request import ProxyRequest
from keybrake.core.windows import Window
from keybrake.proxy.decisions import state_denial
from keybrake.proxy.keys import key_state
from keybrake.store.base import KeyRecord, KeyState
from tests.proxy.build import KEY_ID, NOW, TWILIO_SID, decide, key, plan_of, refusal_of, request

pytestmark = pytest.mark.store_free

USD = 1_000_000  # µUSD per dollar
CHARGE = {"amount": "1000", "currency": "usd", "source": "tok_visa"}
SENDER = "Acme <bot@mail.acme.io>"
SMS = {"To": "+14155550100", "From": "+14155550199", "Body": "hi"}


def email(to: Any, **extra: Any) -> dict[str, Any]:
    return {"from": SENDER, "to": to, "subject": "Your receipt", "html": "<p>Thanks!</p>", **extra}


def twilio_send(body: dict[str, str], account: str = KEY_ID) -> ProxyRequest:
    return request("POST", f"/twilio/2010-04-01/Accounts/{account}/Messages.json", form=body)


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


def caps(
    k: KeyRecord, req: ProxyRequest, facts: dict[str, LedgerEntry] | None = None
) -> list[tuple[str, str, Window, int | None, int]]:
    planned, _ = plan_of(k, req, facts)
    return [(c.name, c.counter, c.window, c.limit, c.amount) for c in planned.caps]


# (why, key, request, estimate µUSD, sends, caps as (field, counter, window, limit, amount))
PLANS: list[tuple[str, KeyRecord, ProxyRequest, int, int, list[tuple[str, str, Window, int | None, int]]]] = [
    (
        "a $10 charge",
        key(daily_usd_cap=100 * USD, max_requests_per_hour=5),
        request("POST", "/stripe/v1/charges", form=CHARGE),
        10 * USD,
        0,
        [
            ("daily_usd_cap", "daily_usd", Window.DAY, 100 * USD, 10 * USD),
            ("total_usd_cap", "total_usd", Window.TOTAL, None, 10 * USD),
            ("max_requests_per_hour", "hourly_requests", Window.HOUR, 5, 1),
        ],
    ),
    (
        "a $30 charge inside param_rules and the per-call bound",
        key(
            param_rules={"currency": {"in": ["usd"]}, "amount": {"max": 5000}},
            max_usd_per_call=40 * USD,
            daily_usd_cap=100 * USD,
        ),
        request("POST", "/stripe/v1/charges", form={**CHARGE, "amount": "3000"}),
        30 * USD,
        0,
        [
            ("daily_usd_cap", "daily_usd", Window.DAY, 100 * USD, 30 * USD),
            ("total_usd_cap", "total_usd", Window.TOTAL, None, 30 * USD),
            ("max_requests_per_hour", "hourly_requests", Window.HOUR, None, 1),
        ],
    ),
    (
        "a free read under $0 caps",
        key(daily_usd_cap=0, max_usd_per_call=0),
        request("GET", "/stripe/v1/customers"),
        0,
        0,
        [
            ("daily_usd_cap", "daily_usd", Window.DAY, 0, 0),
            ("total_usd_cap", "total_usd", Window.TOTAL, None, 0),
            ("max_requests_per_hour", "hourly_requests", Window.HOUR, None, 1),
        ],
    ),
    (
        "an unpriceable call reserves its per-call bound",
        key(max_usd_per_call=7 * USD),
        request("POST", "/stripe/v1/subscriptions", form={"customer": "cus_1"}),
        7 * USD,
        0,
        [
            ("daily_usd_cap", "daily_usd", Window.DAY, None, 7 * USD),
            ("total_usd_cap", "total_usd", Window.TOTAL, None, 7 * USD),
            ("max_requests_per_hour", "hourly_requests", Window.HOUR, None, 1),
        ],
    ),
    (
        "a Resend batch of 10 at $0.0004 per recipient",
        key("resend", daily_usd_cap=USD, daily_send_cap=15),
        request("POST", "/resend/emails/batch", json_body=[email(f"u{i}@example.com") for i in range(10)]),
        4000,
        10,
        [
            ("daily_usd_cap", "daily_usd", Window.DAY, USD, 4000),
            ("total_usd_cap", "total_usd", Window.TOTAL, None, 4000),
            ("max_requests_per_hour", "hourly_requests", Window.HOUR, None, 1),
            ("daily_send_cap", "daily_sends", Window.DAY, 15, 10),
        ],
    ),
]


@pytest.mark.parametrize(("why", "k", "req", "amount", "sends", "expected"), PLANS, ids=[p[0] for p in PLANS])
def test_plans(
    why: str,
    k: KeyRecord,
    req: ProxyRequest,
    amount: int,
    sends: int,
    expected: list[tuple[str, str, Window, int | None, int]],
) -> None:
    planned, _ = plan_of(k, req)
    assert (planned.estimate.amount, planned.estimate.sends) == (amount, sends)
    assert caps(k, req) == expected
    assert planned.notes["reserved_usd"] == amount
    assert planned.daily_counter == ("daily_usd" if k.policy.get("daily_usd_cap") is not None else None)


def test_a_customer_in_scope_is_recorded_and_forwarded() -> None:
    k = key(customer_allowlist=["cus_ABC123"], daily_usd_cap=100 * USD)
    planned, sent = plan_of(k, request("POST", "/stripe/v1/charges", form={**CHARGE, "customer": "cus_ABC123"}))
    assert planned.notes["customer_scope_id"] == "cus_ABC123"
    assert sent.url == "https://api.stripe.com/v1/charges" and b"customer=cus_ABC123" in sent.body
    assert ("authorization", "Bearer sk_test_fake_secret_1234567890") in sent.headers


def test_an_account_in_scope_is_forwarded() -> None:
    _, sent = plan_of(
        key(account_allowlist=["acct_123"]),
        request("GET", "/stripe/v1/customers", headers={"stripe-account": "acct_123"}),
    )
    assert ("stripe-account", "acct_123") in sent.headers


def test_forwarded_headers_are_an_allowlist() -> None:
    hs = {"x-agent-run-id": "run-1", "x-keybrake-key": "vault_key_x", "cookie": "c=1", "user-agent": "sdk/1"}
    _, sent = plan_of(key(), request("GET", "/stripe/v1/balance?expand[]=x", headers=hs))
    names = [k for k, _ in sent.headers]
    assert names == ["user-agent", "authorization", "accept-encoding"], names
    assert sent.url == "https://api.stripe.com/v1/balance?expand[]=x"


@pytest.mark.parametrize("account", [KEY_ID, TWILIO_SID])
def test_twilio_path_names_the_real_account(account: str) -> None:
    """The key's own id or the credential's real SID is accepted; the real SID is what is sent."""
    k = key("twilio", allowed_to_prefixes=["+1"], default_calling_code="+1", daily_usd_cap=5 * USD)
    planned, sent = plan_of(k, twilio_send({**SMS, "To": "(415) 555-0100"}, account=account))
    assert sent.url == f"https://api.twilio.com/2010-04-01/Accounts/{TWILIO_SID}/Messages.json"
    assert b"To=%28415%29+555-0100" in sent.body  # checked normalised, forwarded unchanged
    assert planned.estimate.sends == 1 and planned.estimate.amount > 0


def test_twilio_calls_get_the_policy_time_limit() -> None:
    k = key("twilio", max_call_seconds=120, daily_usd_cap=5 * USD)
    call = {"To": SMS["To"], "From": SMS["From"], "Url": "https://example.com/twiml", "TimeLimit": "3600"}
    planned, sent = plan_of(k, request("POST", f"/twilio/2010-04-01/Accounts/{KEY_ID}/Calls.json", form=call))
    assert sent.body.endswith(b"TimeLimit=120") and b"TimeLimit=3600" not in sent.body
    assert planned.estimate.amount > 0


# A key's state, read on every request: (key, the database's clock ms) → state, refusal code
STATES: list[tuple[str, KeyRecord, int, KeyState, str | None]] = [
    ("active", key(), NOW, KeyState.OK, None),
    ("revoked", key(status="revoked"), NOW, KeyState.REVOKED, "key_revoked"),
    ("expired by both clocks", key(expires_at=NOW - 1), NOW, KeyState.EXPIRED, "key_expired"),
    ("expired only by this host's clock", key(expires_at=NOW - 1), NOW - 5, KeyState.OK, None),
]


class Clocks:
    def __init__(self, db_now: int) -> None:
        self.db_now = db_now

    def now_ms(self) -> int:
        return NOW

    async def db_now_ms(self) -> int:
        return self.db_now


@pytest.mark.parametrize(("why", "k", "db_now", "state", "code"), STATES, ids=[s[0] for s in STATES])
async def test_key_states(why: str, k: KeyRecord, db_now: int, state: KeyState, code: str | None) -> None:
    assert await key_state(k, Clocks(db_now)) is state
    if code is not None:
        denial = state_denial(state, k)
        assert (denial.code, denial.verdict) == (code, f"denied_{code}")
