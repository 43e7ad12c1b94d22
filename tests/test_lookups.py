"""Checks that need no vendor data run before any lookup made with the operator's secret.

Pre-flight GETs carry the real secret (and the request's account context) to the vendor: a key
that may not call the endpoint, may not use the account, is revoked, is at its request cap, or
names a customer it may not use must be refused before any of that happens, and a denial must
not tell the agent anything about an object it may not see.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.stripe_server import FakeStripe, FakeStripeThread
from tests.harness import REAL_SECRET, KeybrakeThread, examples


def _direct(fake: FakeStripe) -> httpx.Client:
    return httpx.Client(base_url=fake.base_url, headers={"Authorization": f"Bearer {REAL_SECRET}"})


def _payment_intent(fake: FakeStripe, customer: str = "cus_SECRET") -> str:
    with _direct(fake) as c:
        r = c.post(
            "/v1/payment_intents",
            data={"amount": 700, "currency": "usd", "payment_method": "pm_card_visa", "customer": customer},
        )
        return str(r.json()["id"])


def test_an_endpoint_the_key_may_not_call_is_refused_before_any_lookup(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    """The issue's example: 100 such requests made 100 GETs with the real secret, carrying a
    Stripe-Account outside the key's account_allowlist, and the denial named the customer."""
    pi = _payment_intent(fake_stripe)
    fake_stripe.reset()
    key = kb.issue({"allowed_endpoints": ["POST /v1/charges"], "account_allowlist": ["acct_MINE"], "daily_usd_cap": 50})
    h = {"Authorization": f"Bearer {key['key']}", "Stripe-Account": "acct_OTHER"}
    for _ in range(100):
        r = httpx.post(f"{kb.url}/stripe/v1/payment_intents/{pi}/confirm", headers=h)
        assert r.status_code == 403 and r.json()["error"]["code"] == "endpoint_not_allowed"
        assert "cus_SECRET" not in r.text
    assert fake_stripe.requests == []  # not one GET with the operator's secret


def test_an_account_the_key_may_not_use_is_refused_before_any_lookup(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    pi = _payment_intent(fake_stripe)
    fake_stripe.reset()
    key = kb.issue({"account_allowlist": ["acct_MINE"], "customer_allowlist": ["cus_A"], "daily_usd_cap": 50})
    h = {"Authorization": f"Bearer {key['key']}", "Stripe-Account": "acct_OTHER"}
    r = httpx.post(f"{kb.url}/stripe/v1/payment_intents/{pi}/confirm", headers=h)
    assert r.status_code == 403 and "account_allowlist" in r.json()["error"]["message"]
    assert fake_stripe.requests == []


def test_a_revoked_key_makes_no_lookup_even_from_a_fresh_snapshot(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    pi = _payment_intent(fake_stripe)
    fake_stripe.reset()
    key = kb.issue({"daily_usd_cap": 50})
    h = {"Authorization": f"Bearer {key['key']}"}
    httpx.get(f"{kb.url}/stripe/v1/balance", headers=h)  # the proxy now holds an active snapshot
    with kb.admin() as c:
        assert c.delete(f"/v1/keys/{key['id']}").status_code == 200
    fake_stripe.reset()
    r = httpx.post(f"{kb.url}/stripe/v1/payment_intents/{pi}/confirm", headers=h)
    assert r.status_code == 401 and r.json()["error"]["code"] == "key_revoked"
    assert fake_stripe.requests == []


def test_a_key_at_its_request_cap_makes_no_lookup(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": 50, "max_requests_per_hour": 1})
    h = {"Authorization": f"Bearer {key['key']}"}
    assert httpx.get(f"{kb.url}/stripe/v1/balance", headers=h).status_code == 200
    pi = _payment_intent(fake_stripe)
    fake_stripe.reset()
    r = httpx.post(f"{kb.url}/stripe/v1/payment_intents/{pi}/confirm", headers=h)
    assert r.status_code == 429 and r.json()["error"]["code"] == "request_cap_exceeded"
    assert fake_stripe.requests == []


def test_a_denial_tells_nothing_about_an_object_the_key_may_not_see(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    theirs = _payment_intent(fake_stripe, "cus_THEIRS")
    fake_stripe.reset()
    key = kb.issue({"customer_allowlist": ["cus_A"], "daily_usd_cap": 50})
    h = {"Authorization": f"Bearer {key['key']}"}
    answers = [
        httpx.post(f"{kb.url}/stripe/v1/payment_intents/{oid}/confirm", headers=h)
        for oid in (theirs, "pi_DOESNOTEXIST")
    ]
    for r in answers:
        assert r.status_code == 403 and r.json()["error"]["code"] == "scope_violation"
        assert "cus_THEIRS" not in r.text
    # an object of another customer and one that does not exist look the same to the agent
    ids = (theirs, "pi_DOESNOTEXIST")
    messages = [r.json()["error"]["message"].replace(oid, "") for r, oid in zip(answers, ids, strict=True)]
    assert messages[0] == messages[1]


# -- the generated kind: every check that needs no vendor data refuses before any lookup --------


class Clock:
    """The server's clock (Unix ms), moved by the test to expire keys without waiting."""

    def __init__(self) -> None:
        self.skew_ms = 0

    def __call__(self) -> int:
        return int(time.time() * 1000) + self.skew_ms


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KeybrakeThread, FakeStripe, str, Clock]]:
    clock = Clock()
    with (
        FakeStripeThread(secret=REAL_SECRET) as fake,
        KeybrakeThread(tmp_path_factory.mktemp("lk"), clock=clock) as kb,
    ):
        kb.add_credential(fake.base_url)
        yield kb, fake.fake, _payment_intent(fake.fake), clock


# (what the request violates, policy, extra headers, extra body): each refusable without vendor data
VIOLATIONS: dict[str, tuple[dict[str, Any], dict[str, str], dict[str, str]]] = {
    "endpoint": ({"allowed_endpoints": ["POST /v1/charges"]}, {}, {}),
    "account": ({"account_allowlist": ["acct_MINE"]}, {"Stripe-Account": "acct_OTHER"}, {}),
    "no_account": ({"account_allowlist": ["acct_MINE"]}, {}, {}),
    "param_rule": ({"param_rules": {"payment_method": {"in": ["pm_card_visa"]}}}, {}, {"payment_method": "pm_x"}),
    "request_cap": ({"max_requests_per_hour": 0}, {}, {}),
    "revoked": ({}, {}, {}),
    "expired": ({}, {}, {}),
}
ENDPOINTS = ["confirm", "capture", "increment_authorization"]


@settings(max_examples=examples(60), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    violations=st.sets(st.sampled_from(sorted(VIOLATIONS)), min_size=1, max_size=3),
    endpoint=st.sampled_from(ENDPOINTS),
    customer_scope=st.booleans(),
)
def test_no_lookup_is_made_for_a_request_refusable_without_vendor_data(
    server: tuple[KeybrakeThread, FakeStripe, str, Clock], violations: set[str], endpoint: str, customer_scope: bool
) -> None:
    kb, fake, pi, clock = server
    policy: dict[str, Any] = {"daily_usd_cap": 100}
    headers: dict[str, str] = {}
    body: dict[str, str] = {}
    for v in violations:
        p, h, b = VIOLATIONS[v]
        policy.update(p)
        headers.update(h)
        body.update(b)
    if customer_scope:
        policy["customer_allowlist"] = ["cus_SECRET"]
    key = kb.issue(policy, expires_in=60)
    auth = {"Authorization": f"Bearer {key['key']}"}
    if "revoked" in violations:
        with kb.admin() as c:
            c.delete(f"/v1/keys/{key['id']}")
    if "expired" in violations:
        clock.skew_ms = 61_000
    fake.reset()
    try:
        r = httpx.post(f"{kb.url}/stripe/v1/payment_intents/{pi}/{endpoint}", data=body, headers={**auth, **headers})
    finally:
        clock.skew_ms = 0
    assert r.status_code in (401, 403, 429), r.text
    assert fake.requests == [], f"a lookup was made for a request refusable on {violations}"
    assert "cus_SECRET" not in r.text


def test_a_customer_parameter_cannot_vouch_for_another_customers_object(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    """Found by the red-team run: `customer=cus_A` beside another customer's object passed the scope,
    read that object back and then confirmed it; a refund named that way leaked its amount."""
    with _direct(fake_stripe) as c:
        theirs = c.post(
            "/v1/payment_intents",
            data={"amount": 4200, "currency": "usd", "customer": "cus_OTHER", "payment_method": "pm_card_visa",
                  "description": "secret order"},
        ).json()  # fmt: skip
        charge = c.post(
            "/v1/charges", data={"amount": 7777, "currency": "usd", "customer": "cus_OTHER", "source": "tok_visa"}
        ).json()
    fake_stripe.reset()
    key = kb.issue({"customer_allowlist": ["cus_A"], "daily_usd_cap": 100, "max_usd_per_call": 1})
    h = {"Authorization": f"Bearer {key['key']}"}
    answers = [
        httpx.post(f"{kb.url}/stripe/v1/payment_intents/{theirs['id']}", data={"customer": "cus_A"}, headers=h),
        httpx.post(f"{kb.url}/stripe/v1/payment_intents/{theirs['id']}/confirm", data={"customer": "cus_A"}, headers=h),
        httpx.post(f"{kb.url}/stripe/v1/refunds", data={"charge": charge["id"], "customer": "cus_A"}, headers=h),
    ]
    for r in answers:
        assert r.status_code == 403 and r.json()["error"]["code"] == "scope_violation", r.text
        assert "secret order" not in r.text and "77.77" not in r.text and "cus_OTHER" not in r.text
    assert [r.method for r in fake_stripe.requests] == ["GET", "GET"]  # one lookup per object, nothing sent


def test_lookups_stay_bounded_by_the_request_cap(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """Found by the red-team run: 30 confirms of objects that do not exist on a key capped at 5
    requests an hour made 30 GETs with the operator's secret (each was refused after its lookup)."""
    key = kb.issue({"max_requests_per_hour": 5, "daily_usd_cap": 10, "customer_allowlist": ["cus_A"]})
    h = {"Authorization": f"Bearer {key['key']}"}
    codes = [
        httpx.post(f"{kb.url}/stripe/v1/payment_intents/pi_NOPE{i}/confirm", headers=h).json()["error"]["code"]
        for i in range(30)
    ]
    gets = [r for r in fake_stripe.requests if r.method == "GET"]
    assert len(gets) == 5  # one lookup per request the cap admits
    assert codes[:5] == ["scope_violation"] * 5 and set(codes[5:]) == {"request_cap_exceeded"}
