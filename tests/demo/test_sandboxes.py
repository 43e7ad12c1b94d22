"""The demo's sandbox vendors answer in the vendors' documented shapes: the official SDKs read
them (objects and errors), and Keybrake's own vendor code prices them as it prices the real
vendors' answers (Stripe `amount`, Twilio `price` and `num_segments`)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
import stripe
from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

from keybrake.core.request import ProxyRequest
from keybrake.demo.sandbox_stripe import StripeSandbox
from keybrake.demo.sandbox_twilio import US_SMS_SEGMENT_USD, TwilioSandbox, segments
from keybrake.integrations.twilio import KeybrakeHttpClient
from keybrake.vendors import twilio_pricing
from keybrake.vendors.base import Estimate
from keybrake.vendors.stripe import Stripe
from keybrake.vendors.twilio_pricing import TwilioParse

pytestmark = pytest.mark.store_free
RATES = {"usd": Decimal(1)}


def _stripe(sb: StripeSandbox, secret: str | None = None) -> stripe.StripeClient:
    return stripe.StripeClient(secret or sb.secret, base_addresses={"api": sb.base_url}, max_network_retries=0)


def test_stripe_sdk_reads_refunds_and_errors(stripe_sandbox: StripeSandbox) -> None:
    sb = stripe_sandbox
    pi = sb.seed_payment(amount=5000, currency="usd", customer="cus_demo", description="order")
    client = _stripe(sb)
    got = client.v1.payment_intents.retrieve(pi["id"])
    assert (got.object, got.status, got.amount_received, got.customer) == (
        "payment_intent",
        "succeeded",
        5000,
        "cus_demo",
    )
    refund = client.v1.refunds.create({"payment_intent": pi["id"], "amount": 3000})
    assert isinstance(refund, stripe.Refund)
    assert (refund.object, refund.amount, refund.currency, refund.status) == ("refund", 3000, "usd", "succeeded")
    charge = client.v1.charges.retrieve(str(got.latest_charge))
    assert (charge.amount_refunded, charge.refunded) == (3000, False)
    with pytest.raises(stripe.InvalidRequestError) as too_much:
        client.v1.refunds.create({"payment_intent": pi["id"], "amount": 2001})
    assert (too_much.value.code, too_much.value.param, too_much.value.http_status) == (
        "amount_too_large",
        "amount",
        400,
    )
    with pytest.raises(stripe.InvalidRequestError) as missing:
        client.v1.payment_intents.retrieve("pi_nope")
    assert missing.value.code == "resource_missing" and missing.value.http_status == 404
    with pytest.raises(stripe.AuthenticationError):
        _stripe(sb, "sk_test_wrong_key_0000").v1.payment_intents.retrieve(pi["id"])
    assert sb.moved_refunds_minor == 3000


def test_stripe_idempotency_key_replays(stripe_sandbox: StripeSandbox) -> None:
    sb = stripe_sandbox
    pi = sb.seed_payment(amount=5000, currency="usd", customer="cus_demo", description="order")
    client = _stripe(sb)
    opts: Any = {"idempotency_key": "same-one"}
    first = client.v1.refunds.create({"payment_intent": pi["id"], "amount": 100}, opts)
    again = client.v1.refunds.create({"payment_intent": pi["id"], "amount": 100}, opts)
    assert first.id == again.id and sb.moved_refunds_minor == 100
    assert again.last_response is not None
    assert again.last_response.headers.get("Idempotent-Replayed") == "true"


def test_keybrake_prices_the_stripe_sandbox_refund(stripe_sandbox: StripeSandbox) -> None:
    """The pre-flight answer gives the facts, the refund's answer the settled cost: $25.00."""
    sb = stripe_sandbox
    v = Stripe()
    pi = sb.seed_payment(amount=250_000, currency="usd", customer="cus_demo", description="order")
    (fact,) = v.ledger_entries(_stripe(sb).v1.payment_intents.retrieve(pi["id"]).to_dict(), None)
    assert (fact.object_id, fact.amount, fact.currency, fact.customer) == (pi["id"], 250_000, "usd", "cus_demo")
    body = f"payment_intent={pi['id']}&amount=2500".encode()
    req = ProxyRequest(
        "POST", b"/v1/refunds", b"", (("content-type", "application/x-www-form-urlencoded"),), body, "127.0.0.1"
    )
    vreq = v.parse(req, ("v1", "refunds"))
    vreq = type(vreq)(vreq.method, vreq.path, vreq.params, facts={pi["id"]: fact})
    est = v.estimate(vreq, RATES)
    assert (est.pricing, est.amount, est.cost_kind) == ("priced", 25_000_000, "refund")
    answer = _stripe(sb).v1.refunds.create({"payment_intent": pi["id"], "amount": 2500}).to_dict()
    cost = v.cost(vreq, est, 200, {}, answer, RATES)
    assert (cost.cost_usd, cost.cost_source, cost.cost_kind, cost.vendor_object_id) == (
        25_000_000, "response", "refund", answer["id"]
    )  # fmt: skip


def _twilio(sb: TwilioSandbox, token: str | None = None) -> Client:
    http = KeybrakeHttpClient("http://unused")
    http.base = sb.base_url  # twilio-python addresses api.twilio.com: send it to the sandbox instead
    return Client(sb.account_sid, token or sb.auth_token, http_client=http)


def test_twilio_sdk_reads_messages_and_errors(twilio_sandbox: TwilioSandbox) -> None:
    sb = twilio_sandbox
    client = _twilio(sb)
    msg = client.messages.create(to="+14155550100", from_="+14155550199", body="hello")
    assert msg.sid and msg.sid.startswith("SM") and len(msg.sid) == 34
    assert (msg.status, msg.price, msg.num_segments, msg.to) == ("queued", None, "1", "+14155550100")
    assert sb.deliver() == 1
    sent = client.messages(msg.sid).fetch()
    assert (sent.status, sent.price, sent.price_unit) == ("delivered", "-0.00830", "USD")
    with pytest.raises(TwilioRestException) as no_to:
        client.messages.create(to="", from_="+14155550199", body="x")
    assert (no_to.value.status, no_to.value.code) == (400, 21604)
    with pytest.raises(TwilioRestException) as bad:
        _twilio(sb, "0" * 32).messages.create(to="+14155550100", from_="+14155550199", body="x")
    assert (bad.value.status, bad.value.code) == (401, 20003)


def test_keybrake_prices_the_twilio_sandbox_message(twilio_sandbox: TwilioSandbox) -> None:
    """Created: no price yet, the estimate stands (kept for reconciliation); sent: Twilio's price."""
    sb = twilio_sandbox
    created = _twilio(sb).messages.create(to="+14155550100", from_="+14155550199", body="x" * 200)
    doc = dict(sb.messages[created.sid])
    est = Estimate("priced", 22_600, "sms", "usd", sends=1)
    cost = twilio_pricing.cost(TwilioParse("message", segments=2), est, 201, doc, RATES)
    assert (cost.cost_usd, cost.cost_source, cost.keep_reservation) == (22_600, "estimate", True)
    sb.deliver()
    final = twilio_pricing.reconcile(dict(sb.messages[created.sid]), RATES)
    assert final is not None
    assert (final.cost_usd, final.cost_source, final.cost_kind) == (
        int(2 * US_SMS_SEGMENT_USD * 10**6),
        "response",
        "sms",
    )
    assert sb.billed_usd == 2 * US_SMS_SEGMENT_USD


@pytest.mark.parametrize(
    ("body", "count"),
    [("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3), ("{" * 80, 1), ("{" * 81, 2),
     ("é" * 160, 1), ("ł" * 70, 1), ("ł" * 71, 2), ("😀" * 35, 1), ("😀" * 36, 2)],
)  # fmt: skip
def test_segments_follow_gsm7_and_ucs2(body: str, count: int) -> None:
    assert segments(body) == count
