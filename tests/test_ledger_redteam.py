"""Ledger cases found by the red-team run, kept as regressions with the right values.

A replayed answer is the object as it was; a fact learnt earlier may be stale; the agent picks the
Stripe-Version. None of these may make Keybrake count less than moved.
"""

from __future__ import annotations

from typing import Any

import httpx
import pytest
import stripe
from stripe.params import ChargeCreateParams, PaymentIntentUpdateParams

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread
from tests.waits import wait_until


def via(kb: KeybrakeThread, key: dict[str, Any]) -> stripe.StripeClient:
    return stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=0)


def usage(kb: KeybrakeThread, key: dict[str, Any]) -> tuple[float, float]:
    u = kb.key(key["id"])["usage"]["daily_usd"]
    return float(u["used"]), float(u["reserved"])


@pytest.mark.parametrize("raised", [{"amount": 900_000}, {"amount": 99_999_999, "currency": "eur"}])
def test_a_replayed_update_does_not_roll_the_ledger_back(
    kb: KeybrakeThread, fake_stripe: FakeStripe, raised: PaymentIntentUpdateParams
) -> None:
    """Was: $9,000 (or €999,999.99) confirmed on a $10 key, priced at the $1 a replay reported."""
    key = kb.issue({"daily_usd_cap": 10, "max_usd_per_call": 10})
    sc = via(kb, key)
    pi = sc.v1.payment_intents.create({"amount": 100, "currency": "usd", "payment_method": "pm_card_visa"})
    small: PaymentIntentUpdateParams = {"amount": 100, "currency": "usd"}
    sc.v1.payment_intents.update(pi.id, small, {"idempotency_key": "upd-1"})
    sc.v1.payment_intents.update(pi.id, raised, {"idempotency_key": "upd-2"})
    replay = sc.v1.payment_intents.update(pi.id, small, {"idempotency_key": "upd-1"})  # Stripe replays the $1
    assert replay.amount == 100 and fake_stripe.payment_intents[pi.id]["amount"] == raised["amount"]
    with pytest.raises(stripe.StripeError) as info:
        sc.v1.payment_intents.confirm(pi.id)
    assert info.value.http_status == 403  # amount_over_limit, or currency_not_supported for eur
    assert fake_stripe.payment_intents[pi.id]["status"] == "requires_confirmation"
    assert usage(kb, key) == (0, 0)


def test_a_replayed_authorisation_cannot_make_a_refund_release_a_captured_charge(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    """Was: $495 captured and kept over 5 rounds on a $150 key whose counters read $0."""
    key = kb.issue({"daily_usd_cap": 150})
    sc = via(kb, key)
    moved = 0
    for i in range(5):
        params: ChargeCreateParams = {"amount": 10000, "currency": "usd", "source": "tok_visa", "capture": False}
        try:
            ch = sc.v1.charges.create(params, {"idempotency_key": f"auth-{i}"})
            sc.v1.charges.capture(ch.id)
            sc.v1.charges.create(params, {"idempotency_key": f"auth-{i}"})  # replay: "captured": false
            sc.v1.refunds.create({"charge": ch.id, "amount": 100})
        except stripe.RateLimitError:
            break
    for row in fake_stripe.charges.values():
        moved += row["amount_captured"] + row["amount_refunded"]  # refunds consume caps too
    used, reserved = usage(kb, key)
    assert reserved == 0 and round(used * 100) == moved and used <= 150


def test_a_refund_of_a_charge_captured_since_it_was_seen_counts(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    """Was: a refund counted $0 because the ledger still said the charge was uncaptured."""
    key = kb.issue({"daily_usd_cap": 150})
    sc = via(kb, key)
    pi = sc.v1.payment_intents.create(
        {"amount": 10000, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True,
         "capture_method": "manual"}
    )  # fmt: skip
    charge_id = pi.latest_charge
    assert isinstance(charge_id, str)  # an id: the charge is not expanded
    assert sc.v1.charges.retrieve(charge_id).captured is False  # the ledger learns it uncaptured
    sc.v1.payment_intents.capture(pi.id)  # captured through the PaymentIntent: the charge is not re-read
    assert sc.v1.refunds.create({"charge": charge_id, "amount": 5000}).amount == 5000
    with pytest.raises(stripe.RateLimitError):  # $100 + $50 + $50 > $150
        sc.v1.refunds.create({"charge": charge_id, "amount": 5000})
    assert usage(kb, key) == (150, 0)


@pytest.mark.parametrize(("status", "kept"), [("requires_source_action", True), ("requires_source", False)])
def test_statuses_of_older_api_versions_are_read(
    kb: KeybrakeThread, fake_stripe: FakeStripe, status: str, kept: bool
) -> None:
    """Before 2019-02-11 `requires_action` was `requires_source_action` (the agent picks the version):
    it was settled at $0 and never reconciled."""
    key = kb.issue({"daily_usd_cap": 100})
    sc = via(kb, key)
    pi = sc.v1.payment_intents.create({"amount": 5000, "currency": "usd", "payment_method": "pm_card_visa"})
    old = {"id": pi.id, "object": "payment_intent", "status": status, "amount": 5000, "amount_received": 0,
           "amount_capturable": 0, "currency": "usd"}  # fmt: skip
    fake_stripe.next_status.append((200, old))
    r = httpx.post(
        f"{kb.url}/stripe/v1/payment_intents/{pi.id}/confirm",
        headers={"Authorization": f"Bearer {key['key']}", "Stripe-Version": "2018-11-08"},
    )
    assert r.status_code == 200
    assert usage(kb, key) == ((0, 50) if kept else (0, 0))
    row = kb.audit(key_id=key["id"])[0]
    assert row["cost_source"] == ("estimate" if kept else "response")


def test_a_payment_intent_status_keybrake_does_not_know_keeps_the_estimate(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    key = kb.issue({"daily_usd_cap": 100})
    sc = via(kb, key)
    pi = sc.v1.payment_intents.create({"amount": 5000, "currency": "usd", "payment_method": "pm_card_visa"})
    fake_stripe.next_status.append((200, {"id": pi.id, "object": "payment_intent", "status": "brand_new_status",
                                          "amount": 5000, "currency": "usd"}))  # fmt: skip
    sc.v1.payment_intents.confirm(pi.id)
    used, reserved = usage(kb, key)
    assert used + reserved == 50  # never settled to $0


@pytest.mark.timing
@pytest.mark.parametrize("raised", [{"amount": 900_000}, {"amount": 99_999_999, "currency": "eur"}])
def test_a_confirm_cannot_race_the_update_that_raises_its_amount(
    kb: KeybrakeThread, fake_stripe: FakeStripe, raised: PaymentIntentUpdateParams
) -> None:
    """Was: a confirm sent while a free update of the amount was at Stripe reserved the old $1 and
    moved $9,000 (or €999,999.99) on a $10 key. One write per object is in flight at a time, and a
    write goes only if the facts it was priced from are still current."""
    import threading

    key = kb.issue({"daily_usd_cap": 10, "max_usd_per_call": 10})
    sc = via(kb, key)
    pi = sc.v1.payment_intents.create({"amount": 100, "currency": "usd", "payment_method": "pm_card_visa"})
    fake_stripe.delay_seconds = 1.0  # Stripe takes a moment on each request
    sent = len(fake_stripe.requests)
    updater = threading.Thread(target=lambda: via(kb, key).v1.payment_intents.update(pi.id, raised))
    updater.start()
    wait_until(  # the update is at Stripe, its answer not back yet (1 s from now)
        lambda: any(r.path == f"/v1/payment_intents/{pi.id}" for r in fake_stripe.requests[sent:]),
        "the update to reach Stripe",
    )
    retrying = stripe.StripeClient(key["key"], base_addresses={"api": f"{kb.url}/stripe"}, max_network_retries=3)
    with pytest.raises(stripe.StripeError) as info:
        retrying.v1.payment_intents.confirm(pi.id)  # 409 while the update is in flight, then priced afresh
    updater.join()
    fake_stripe.delay_seconds = 0
    assert info.value.http_status == 403  # amount_over_limit at $9,000, or no rate for eur
    assert fake_stripe.payment_intents[pi.id]["status"] == "requires_confirmation"
    assert usage(kb, key) == (0, 0)
    verdicts = [r["error_code"] for r in kb.audit(key_id=key["id"]) if r["path"].endswith("/confirm")]
    assert "idempotency_in_flight" in verdicts
