"""Stripe's one parse, estimate and cost parsing, as pure functions."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from keybrake.core.errors import Denial
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.vendors.base import VendorCost, VendorRequest
from keybrake.vendors.stripe import Stripe
from keybrake.vendors.stripe_money import exponent

RATES = {"usd": Decimal(1), "jpy": Decimal("0.0067"), "kwd": Decimal("3.26"), "eur": Decimal("1.09")}
FORM = ("content-type", "application/x-www-form-urlencoded")
S = Stripe()


def vreq(
    method: str, path: str, body: bytes = b"", headers: tuple[tuple[str, str], ...] = (FORM,), query: bytes = b""
) -> VendorRequest:
    segs = tuple(path.strip("/").split("/"))
    return S.parse(ProxyRequest(method, path.encode(), query, headers, body, "127.0.0.1"), segs)


def test_currency_exponents() -> None:
    assert [exponent(c) for c in ("jpy", "KRW", "bhd", "kwd", "usd", "isk", "huf", "twd")] == [0, 0, 3, 3, 2, 2, 2, 2]


@pytest.mark.parametrize(
    ("method", "path", "body", "pricing", "micro", "kind"),
    [
        ("POST", "/v1/charges", b"amount=1000&currency=usd", "priced", 10_000_000, "charge"),
        ("POST", "/v1/charges", b"amount=1000&currency=jpy", "priced", 6_700_000, "charge"),
        ("POST", "/v1/charges", b"amount=1500&currency=kwd", "priced", 4_890_000, "charge"),
        ("POST", "/v1/charges", b"amount=1000&currency=usd&capture=false", "priced", 10_000_000, "authorization"),
        ("POST", "/v1/payment_intents", b"amount=500&currency=usd", "free", 0, "none"),
        ("POST", "/v1/payment_intents", b"amount=500&currency=usd&confirm=true", "priced", 5_000_000, "charge"),
        ("POST", "/v1/payouts", b"amount=200&currency=eur", "priced", 2_180_000, "payout"),
        ("POST", "/v1/transfers", b"amount=200&currency=usd&destination=acct_1", "priced", 2_000_000, "transfer"),
        ("POST", "/v1/refunds", b"charge=ch_1", "unpriceable", 0, "refund"),
        ("POST", "/v1/refunds", b"customer=cus_1&amount=100&currency=usd", "priced", 1_000_000, "refund"),
        ("POST", "/v1/refunds", b"charge=ch_1&amount=100&currency=usd", "unpriceable", 0, "refund"),
        ("POST", "/v1/payment_intents/pi_1/confirm", b"", "unpriceable", 0, "charge"),
        ("POST", "/v1/subscriptions", b"customer=cus_1", "unpriceable", 0, "charge"),
        ("POST", "/v1/some_future_endpoint", b"", "unpriceable", 0, "charge"),
        ("GET", "/v1/charges/ch_1", b"", "free", 0, "none"),
        ("POST", "/v1/customers", b"email=a%40b.c", "free", 0, "none"),
    ],
)
def test_estimate(method: str, path: str, body: bytes, pricing: str, micro: int, kind: str) -> None:
    est = S.estimate(vreq(method, path, body), RATES)
    assert (est.pricing, est.amount, est.cost_kind) == (pricing, micro, kind)


@pytest.mark.parametrize(
    "body",
    [b"amount=-1&currency=usd", b"amount=1.5&currency=usd", b"currency=usd", b"amount=100", b"amount=100&currency=us"],
)
def test_priced_endpoints_need_a_clean_amount_and_currency(body: bytes) -> None:
    with pytest.raises(Denial) as info:
        S.estimate(vreq("POST", "/v1/charges", body), RATES)
    assert info.value.code == "body_invalid"


def test_unknown_currency_is_refused_with_a_clear_message() -> None:
    with pytest.raises(Denial) as info:
        S.estimate(vreq("POST", "/v1/charges", b"amount=100&currency=xyz"), RATES)
    assert info.value.code == "currency_not_supported"
    assert "XYZ" in info.value.message and "KEYBRAKE_FX_RATES_FILE" in info.value.message


def test_body_must_be_form_encoded() -> None:
    with pytest.raises(Denial) as info:
        vreq("POST", "/v1/charges", b'{"amount": 1}', headers=(("content-type", "application/json"),))
    assert info.value.code == "unsupported_media_type"


def test_idempotency_key_in_the_body_is_refused() -> None:
    with pytest.raises(Denial) as info:
        vreq("POST", "/v1/charges", b"amount=1&currency=usd&idempotency_key=abc")
    assert info.value.code == "param_not_allowed"
    assert "Idempotency-Key header" in info.value.message


def test_account_context_and_scope() -> None:
    r = vreq("GET", "/v1/charges", headers=(("stripe-account", "acct_1"),))
    assert r.account_context == "acct_1"
    with pytest.raises(Denial) as info:
        vreq("GET", "/v1/charges", headers=(("stripe-account", "acct_1"), ("stripe-context", "acct_2")))
    assert info.value.code == "param_ambiguous"
    pol = Policy.from_store({"account_allowlist": ["acct_1"]})
    S.check_scope(pol, r)
    with pytest.raises(Denial) as info:
        S.check_scope(pol, vreq("GET", "/v1/charges", headers=(("stripe-context", "acct_9"),)))
    assert info.value.code == "scope_violation"
    with pytest.raises(Denial):
        S.check_scope(pol, vreq("GET", "/v1/charges"))
    S.check_scope(Policy.from_store({"account_allowlist": ["self"]}), vreq("GET", "/v1/charges"))


def test_customer_scope() -> None:
    pol = Policy.from_store({"customer_allowlist": ["cus_A"]})
    assert S.check_scope(pol, vreq("POST", "/v1/charges", b"customer=cus_A")).customer_scope_id == "cus_A"
    assert S.check_scope(pol, vreq("GET", "/v1/customers/cus_A")).customer_scope_id == "cus_A"
    for r in (
        vreq("POST", "/v1/charges", b"customer=cus_B"),
        vreq("GET", "/v1/customers"),
        vreq("POST", "/v1/charges", b"amount=1"),
    ):
        with pytest.raises(Denial) as info:
            S.check_scope(pol, r)
        assert info.value.code == "scope_violation"


def _cost(
    path: str, body: bytes, answer: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None
) -> VendorCost:
    r = vreq("POST", path, body)
    est = S.estimate(r, RATES)
    return S.cost(r, est, status, headers or {}, answer, RATES)


def test_cost_from_answers() -> None:
    charge = {
        "id": "ch_1",
        "object": "charge",
        "amount": 1000,
        "currency": "usd",
        "status": "succeeded",
        "captured": True,
    }
    c = _cost("/v1/charges", b"amount=1000&currency=usd", charge)
    assert (c.cost_usd, c.cost_source, c.cost_kind, c.vendor_object_id) == (10_000_000, "response", "charge", "ch_1")
    replay = _cost("/v1/charges", b"amount=1000&currency=usd", charge, headers={"idempotent-replayed": "true"})
    assert replay.cost_usd == 0
    declined = _cost("/v1/charges", b"amount=1000&currency=usd", {"error": {"type": "card_error"}}, status=402)
    assert declined.cost_usd == 0
    pi = {
        "id": "pi_1",
        "object": "payment_intent",
        "amount": 700,
        "amount_received": 700,
        "currency": "jpy",
        "status": "succeeded",
    }
    c = _cost("/v1/payment_intents", b"amount=700&currency=jpy&confirm=true", pi)
    assert c.cost_usd == 4_690_000
    action = _cost(
        "/v1/payment_intents",
        b"amount=700&currency=usd&confirm=true",
        {**pi, "currency": "usd", "status": "requires_action"},
    )
    assert action.keep_reservation and action.cost_source == "estimate" and action.cost_usd == 7_000_000
    failed = _cost(
        "/v1/payment_intents",
        b"amount=700&currency=usd&confirm=true",
        {**pi, "currency": "usd", "status": "requires_payment_method"},
    )
    assert failed.cost_usd == 0
    refund = _cost(
        "/v1/refunds",
        b"charge=ch_1",
        {"id": "re_1", "object": "refund", "amount": 300, "currency": "usd", "status": "succeeded"},
    )
    assert (refund.cost_usd, refund.cost_kind) == (3_000_000, "refund")


def test_free_endpoints_never_count_what_they_return() -> None:
    r = vreq("GET", "/v1/charges/ch_1")
    est = S.estimate(r, RATES)
    c = S.cost(r, est, 200, {}, {"object": "charge", "amount": 99999, "currency": "usd"}, RATES)
    assert c.cost_usd == 0


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/v1/invoices"),
        ("POST", "/v1/invoices/in_1"),
        ("POST", "/v1/invoiceitems"),
        ("POST", "/v1/invoiceitems/ii_1"),
        ("POST", "/v1/invoices/in_1/finalize"),
        ("POST", "/v2/core/anything"),
    ],
)
def test_calls_stripe_can_collect_later_are_not_free(method: str, path: str) -> None:
    assert S.estimate(vreq(method, path), RATES).pricing == "unpriceable"


@pytest.mark.parametrize("confirm", ["true", "1", "True", "yes", ""])
def test_payment_intent_create_is_free_only_without_confirm(confirm: str) -> None:
    body = f"amount=500&currency=usd&confirm={confirm}".encode()
    assert S.estimate(vreq("POST", "/v1/payment_intents", body), RATES).pricing == "priced"
    assert (
        S.estimate(vreq("POST", "/v1/payment_intents", b"amount=500&currency=usd&confirm=false"), RATES).pricing
        == "free"
    )


def test_a_refund_of_a_named_charge_is_priced_in_the_charges_currency() -> None:
    from keybrake.core.ledger import LedgerEntry

    r = vreq("POST", "/v1/refunds", b"charge=ch_1&amount=100000&currency=jpy")
    facts = {"ch_1": LedgerEntry("ch_1", "charge", "cus_1", None, "usd", 200000, 200000)}
    r = type(r)(r.method, r.path, r.params, r.account_context, facts=facts)
    est = S.estimate(r, RATES)
    assert (est.pricing, est.amount, est.currency) == ("priced", 1_000_000_000, "usd")  # $1,000, not ¥100,000
    unknown = S.estimate(vreq("POST", "/v1/refunds", b"charge=ch_2&amount=100&currency=usd"), RATES)
    assert unknown.pricing == "unpriceable"  # the charge could not be looked up
