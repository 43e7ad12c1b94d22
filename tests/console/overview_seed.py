"""Real activity for the overview and spend tests, sent through the proxy with the official
Stripe SDK: a $20 charge under a $25 daily cap (80 %: near the cap), a second one refused by the
cap (spend_cap_exceeded), a call outside the key's endpoints (endpoint_not_allowed), and a $7
charge of another label."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
import stripe

from tests.harness import KeybrakeThread
from tests.stripe_sdk import client, code_of


def pi(amount: int) -> Any:
    """A confirmed card PaymentIntent's parameters: `amount` in cents."""
    return {"amount": amount, "currency": "usd", "payment_method": "pm_card_visa", "confirm": True}


@dataclass
class Seeded:
    """What `seed` left: the near-cap key and the other one."""

    near: dict[str, Any]
    other: dict[str, Any]


def seed(kb: KeybrakeThread) -> Seeded:
    """Send the calls (see the module's docstring) and check each got the answer it should."""
    near = kb.issue(
        {"daily_usd_cap": 25, "allowed_endpoints": ["POST /v1/payment_intents"]}, label="billing:agent:run-7"
    )
    sc = client(kb, near)
    assert sc.v1.payment_intents.create(pi(2000)).status == "succeeded"
    with pytest.raises(stripe.StripeError) as capped:
        sc.v1.payment_intents.create(pi(2000))
    assert code_of(capped.value) == "spend_cap_exceeded"
    with pytest.raises(stripe.StripeError) as outside:
        sc.v1.customers.create({"email": "a@example.com"})
    assert code_of(outside.value) == "endpoint_not_allowed"
    other = kb.issue({"daily_usd_cap": 100}, label="support:bot")
    assert client(kb, other).v1.payment_intents.create(pi(700)).status == "succeeded"
    return Seeded(near, other)
