"""`X-Keybrake-Spend-Remaining-USD` is what the key's USD caps leave once the call is settled:
a declined card gives its reservation back, so the next answer and this one agree.

Found through the MCP front (a declined $7 payment said $84 left, the next call $91 left); the
header is the proxy's, so it is checked here on plain HTTP, as an SDK sees it."""

from __future__ import annotations

from decimal import Decimal

import httpx
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fakes.stripe_server import FakeStripe
from tests.harness import KeybrakeThread, examples

CAP_USD = 100


def _pay(kb: KeybrakeThread, key: dict[str, object], cents: int, declined: bool) -> httpx.Response:
    card = "pm_card_chargeDeclined" if declined else "pm_card_visa"
    body = {"amount": str(cents), "currency": "usd", "payment_method": card, "confirm": "true"}
    return httpx.post(
        f"{kb.url}/stripe/v1/payment_intents", data=body, headers={"Authorization": f"Bearer {key['key']}"}, timeout=30
    )


def test_a_declined_card_leaves_the_remaining_spend_as_it_was(kb: KeybrakeThread, fake_stripe: FakeStripe) -> None:
    key = kb.issue({"daily_usd_cap": CAP_USD})
    paid = _pay(kb, key, 900, False)
    assert paid.status_code == 200 and paid.headers["x-keybrake-spend-remaining-usd"] == "91"
    declined = _pay(kb, key, 700, True)
    assert declined.status_code == 402 and declined.headers["x-keybrake-spend-remaining-usd"] == "91"


@settings(max_examples=examples(12), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.integers(50, 3000), st.booleans()), min_size=1, max_size=5))
def test_remaining_is_the_cap_less_what_was_charged(
    kb: KeybrakeThread, fake_stripe: FakeStripe, calls: list[tuple[int, bool]]
) -> None:
    key = kb.issue({"daily_usd_cap": CAP_USD})
    charged = 0
    for cents, declined in calls:
        r = _pay(kb, key, cents, declined)
        assert r.status_code == (402 if declined else 200), r.text
        charged += 0 if declined else cents
        assert Decimal(r.headers["x-keybrake-spend-remaining-usd"]) == CAP_USD - Decimal(charged) / 100
