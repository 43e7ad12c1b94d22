"""Bounded numbers, and no unexpected error loses a row.

Amounts are bounded to what the vendor takes before they reach arithmetic; numbers in vendor
answers are validated before they are trusted; any unexpected exception on the request path is
a recorded 503 (`enforcement_unavailable`) that keeps what may have moved; and one settlement the
store refuses cannot strand the others of its batch.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import httpx
import pytest
import stripe
from hypothesis import example, given, settings
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.request import ProxyRequest
from keybrake.proxy.decisions import MAX_ESTIMATE_MICRO, check_estimate_bounds
from keybrake.vendors.base import Estimate, Vendor, VendorRequest
from keybrake.vendors.resend import Resend
from keybrake.vendors.stripe import Stripe
from keybrake.vendors.twilio import Twilio
from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread

RATES = {"usd": Decimal(1), "eur": Decimal("1.09"), "jpy": Decimal("0.0067"), "bhd": Decimal("2.65")}


def test_an_amount_beyond_what_stripe_takes_is_refused_in_stripes_shape(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    """The issue's example: a key without a USD cap, amount=999999999999999 → plain-text 500, no row."""
    key = kb.issue({"allowed_endpoints": ["POST /v1/charges"]})
    sc = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0)
    with pytest.raises(stripe.InvalidRequestError) as info:
        sc.v1.charges.create({"amount": 999999999999999, "currency": "usd", "source": "tok_visa"})
    assert info.value.http_status == 400 and info.value.code == "body_invalid"
    assert "12 digits" in str(info.value.user_message)
    assert fake_stripe.requests == []
    row = kb.audit(key_id=key["id"])[0]
    assert row["verdict"] == "denied_body_invalid" and row["status"] == 400


def test_an_absurd_amount_in_an_answer_leaves_the_estimate_and_strands_nothing(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    other = kb.issue({"daily_usd_cap": 100}, label="test:agent:run-2")
    absurd = {"id": "ch_absurd", "object": "charge", "amount": 10**30, "currency": "usd", "status": "succeeded"}
    fake_stripe.next_status = [(200, absurd)]
    h = {"Authorization": f"Bearer {key['key']}"}
    r = httpx.post(f"{kb.url}/stripe/v1/charges", data={"amount": 500, "currency": "usd"}, headers=h)
    assert r.status_code == 200
    ok = httpx.post(
        f"{kb.url}/stripe/v1/charges",
        data={"amount": 300, "currency": "usd", "source": "tok_visa"},
        headers={"Authorization": f"Bearer {other['key']}"},
    )
    assert ok.status_code == 200
    mine = kb.audit(key_id=key["id"])[0]
    assert (mine["verdict"], mine["cost_usd"], mine["cost_source"]) == ("allowed", 5, "estimate")
    assert kb.audit(key_id=other["id"])[0]["cost_usd"] == 3
    assert kb.query("SELECT count(*) FROM audit WHERE verdict = 'in_flight'") == [(0,)]


def test_an_unexpected_error_before_the_reservation_is_a_recorded_503(
    kb: KeybrakeThread, fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert kb.app is not None
    vendor = kb.app.pipeline.vendors["stripe"]

    def broken(vreq: VendorRequest) -> dict[str, Any]:
        raise RuntimeError("summary exploded on sk_test_1234567890abcdef")

    monkeypatch.setattr(vendor, "summary", broken)
    key = kb.issue({"daily_usd_cap": 10})
    r = httpx.post(
        f"{kb.url}/stripe/v1/charges",
        data={"amount": 100, "currency": "usd"},
        headers={"Authorization": f"Bearer {key['key']}"},
    )
    assert r.status_code == 503 and r.json()["error"]["code"] == "enforcement_unavailable"
    assert r.headers["content-type"].startswith("application/json") and r.headers["stripe-should-retry"] == "true"
    assert fake_stripe.requests == []
    row = kb.audit(key_id=key["id"])[0]
    assert row["verdict"] == "denied_enforcement_unavailable" and row["status"] == 503
    assert "sk_test_1234567890abcdef" not in kb.logs.text()
    assert "RuntimeError" in kb.logs.text()


def test_an_unexpected_error_after_forwarding_keeps_the_reservation_and_a_retry_is_free(
    kb: KeybrakeThread, fake_stripe: FakeStripe, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert kb.app is not None
    vendor = kb.app.pipeline.vendors["stripe"]
    real_cost = vendor.cost
    calls = {"n": 0}

    def cost_once_broken(*args: Any) -> Any:
        calls["n"] += 1
        if calls["n"] == 1:
            raise ValueError("cost parsing failed")
        return real_cost(*args)

    monkeypatch.setattr(vendor, "cost", cost_once_broken)
    key = kb.issue({"daily_usd_cap": 10})
    sc = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=2)
    charge = sc.v1.charges.create({"amount": 700, "currency": "usd", "source": "tok_visa"})
    assert charge.amount == 700 and len(fake_stripe.charges) == 1  # the retry got Stripe's kept answer
    rows = sorted(kb.audit(key_id=key["id"]), key=lambda r: r["id"])
    assert rows[0]["status"] == 503 and rows[0]["error_code"] == "enforcement_unavailable"
    assert rows[0]["verdict"] == "allowed" and rows[0]["cost_usd"] == 7  # settled by the retry's answer
    assert rows[1]["reserved_usd"] == 0 and rows[1]["metadata"]["retry_of"] == rows[0]["id"]
    usage = kb.key(key["id"])["usage"]["daily_usd"]
    assert (usage["used"], usage["reserved"]) == (7, 0)


# -- generated: any vendor answer, any amount parameter --------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
    | st.sampled_from(["usd", "eur", "USD", "succeeded", "requires_capture", "canceled", "-1e999", "NaN", "-0.0079"]),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
answer_fields = st.fixed_dictionaries(
    {},
    optional={
        name: json_values
        for name in (
            "id",
            "object",
            "amount",
            "amount_received",
            "amount_capturable",
            "amount_captured",
            "amount_refunded",
            "captured",
            "currency",
            "status",
            "price",
            "price_unit",
            "num_segments",
            "sid",
            "data",
        )
    },
)
VENDORS: dict[str, Vendor] = {"stripe": Stripe(), "twilio": Twilio(), "resend": Resend()}


@pytest.mark.store_free
@settings(max_examples=1000, deadline=None)
@given(
    vendor=st.sampled_from(sorted(VENDORS)),
    doc=answer_fields | json_values,
    status=st.sampled_from([200, 201, 402, 404]),
    pricing=st.sampled_from(["free", "priced", "unpriceable"]),
    cost_kind=st.sampled_from(["charge", "refund", "capture", "sms", "email"]),
)
# found by this test: a list where a status string belongs; an infinite segment count
@example(vendor="stripe", doc={"status": []}, status=200, pricing="priced", cost_kind="charge")
@example(vendor="twilio", doc={"num_segments": float("inf")}, status=200, pricing="priced", cost_kind="sms")
def test_any_vendor_answer_settles_to_a_bounded_cost(
    vendor: str, doc: Any, status: int, pricing: str, cost_kind: str
) -> None:
    v = VENDORS[vendor]
    vreq = VendorRequest("POST", ("v1", "charges"), Stripe().parse(_req(b""), ("v1", "charges")).params)
    estimate = Estimate(pricing, 5_000_000, cost_kind, "usd", minor=500)
    cost = v.cost(vreq, estimate, status, {}, doc, RATES)
    assert 0 <= cost.cost_usd <= MAX_ESTIMATE_MICRO
    later = v.reconcile(doc, RATES)
    assert later is None or 0 <= later.cost_usd <= MAX_ESTIMATE_MICRO


@pytest.mark.store_free
@settings(max_examples=1000, deadline=None)
@given(
    amount=st.one_of(st.integers(min_value=-(10**20), max_value=10**20).map(str), st.text(max_size=20)),
    currency=st.sampled_from(["usd", "eur", "jpy", "bhd", "USD", "xxx", ""]),
    path=st.sampled_from([("v1", "charges"), ("v1", "payouts"), ("v1", "transfers"), ("v1", "refunds")]),
)
def test_any_amount_parameter_is_refused_or_bounded(amount: str, currency: str, path: tuple[str, ...]) -> None:
    from urllib.parse import urlencode

    body = urlencode({"amount": amount, "currency": currency}).encode()
    try:
        vreq = Stripe().parse(_req(body), path)
        estimate = Stripe().estimate(vreq, RATES)
        check_estimate_bounds(estimate, "stripe")  # the pipeline's guard after every estimate
    except Denial as denial:
        assert 400 <= denial.status < 500
        return
    assert 0 <= estimate.amount <= MAX_ESTIMATE_MICRO


def _req(body: bytes) -> ProxyRequest:
    return ProxyRequest(
        "POST", b"/v1/charges", b"", (("content-type", "application/x-www-form-urlencoded"),), body, "127.0.0.1"
    )


# -- agent input that once raised inside the checks (found by the red-team run) --------------------


@pytest.mark.timing
@pytest.mark.store_free
@pytest.mark.parametrize(
    ("vendor", "path", "body", "ctype"),
    [
        ("resend", ("emails",), b'{"from":"x@example.com","to":".<a@example.com>>","subject":"s","text":"t"}', "json"),
        (
            "resend",
            ("emails",),
            b'{"from":"x@example.com","to":"a@example.com ' + b"(" * 3000 + b'","text":"t"}',
            "json",
        ),
        (
            "resend",
            ("emails",),
            b'{"from":"x@example.com","to":"a@example.com","subject":"\\ud800","text":"t"}',
            "json",
        ),
        ("resend", ("emails",), b'{"to":' + b"[" * 5000 + b"]" * 5000 + b"}", "json"),
        ("stripe", ("v1", "charges"), b"a[" + b"b][" * 20000 + b"c]=1", "form"),
        ("stripe", ("v1", "charges"), b"a" + b".b" * 60000 + b"=1", "form"),
        ("resend", ("emails",), b'{"' + b"a." * 30000 + b'b":1}', "json"),
        (
            "twilio",
            ("2010-04-01", "Accounts", "vk_1", "Calls.json"),
            "To=%2B14155550100&From=%2B1&Url=u&TimeLimit=²".encode(),
            "form",
        ),
    ],
)
def test_hostile_input_is_a_4xx_quickly(vendor: str, path: tuple[str, ...], body: bytes, ctype: str) -> None:
    import time

    from keybrake.core.policy import Policy

    v = VENDORS[vendor]
    content_type = "application/json" if ctype == "json" else "application/x-www-form-urlencoded"
    req = ProxyRequest("POST", b"/" + "/".join(path).encode(), b"", (("content-type", content_type),), body, "")
    started = time.monotonic()
    with pytest.raises(Denial) as info:
        vreq = v.parse(req, path)
        v.check_scope(Policy(vendor_data={"allowed_to_prefixes": ["+1"], "allowed_to_domains": ["example.com"]}), vreq)
        v.fingerprint(vreq)
        v.estimate(vreq, RATES)
    assert 400 <= info.value.status < 500
    assert time.monotonic() - started < 1.0


@pytest.mark.store_free
@settings(max_examples=800, deadline=None)
@given(value=st.text(max_size=60) | st.from_regex(r"[a-z(<>.@\" ,=?]{0,80}", fullmatch=True))
def test_any_email_address_string_is_read_or_refused(value: str) -> None:
    from keybrake.core.destinations import email_address

    try:
        address, domain = email_address(value, field="to")
    except Denial as denial:
        assert denial.status in (400, 403)
        return
    assert "@" in address and address.endswith("@" + domain)
