"""Retries are free only when the first attempt may have moved money: generated against a model of Stripe.

Each example sends a sequence of charges through a running Keybrake, reusing a few
Idempotency-Keys, while the fake Stripe answers each attempt that reaches it in one of the ways
Stripe does: it runs the charge (kept under the key), declines the card (402, kept), or refuses
before executing — a 429 lock timeout, a validation 400, a 409 lock conflict — which Stripe
keeps nothing for, so a repeat with the same key runs for real. A reference model of Stripe's
idempotency layer says what money moved; Keybrake's counters must equal it exactly and never
pass the cap.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tests.fakes.stripe_server import FakeStripe, FakeStripeThread
from tests.harness import REAL_SECRET, KeybrakeThread, examples

CAP_CENTS = 10_000  # $100 daily cap
UNKEPT = {
    "lock429": (429, {"error": {"type": "invalid_request_error", "code": "lock_timeout", "message": "locked"}}),
    "invalid400": (
        400,
        {"error": {"type": "invalid_request_error", "code": "parameter_invalid_integer", "message": "x"}},
    ),
    "conflict409": (409, {"error": {"type": "invalid_request_error", "code": "lock_timeout", "message": "conflict"}}),
}


@dataclass
class StripeModel:
    """Stripe's idempotency layer: a result is kept only once the endpoint began executing."""

    kept: dict[str, tuple[tuple[int, str], int]] = field(default_factory=dict)  # key → (params, status)
    moved: int = 0

    def replays(self, key: str, params: tuple[int, str]) -> bool:
        return key in self.kept and self.kept[key][0] == params

    def attempt(self, key: str, params: tuple[int, str], behaviour: str) -> int:
        if key in self.kept:
            first, status = self.kept[key]
            return status if first == params else 400  # replay, or idempotency_error
        if behaviour in UNKEPT:
            return UNKEPT[behaviour][0]
        if behaviour == "decline":
            self.kept[key] = (params, 402)
            return 402
        self.kept[key] = (params, 200)
        self.moved += params[0]
        return 200


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[KeybrakeThread, FakeStripe]]:
    with FakeStripeThread(secret=REAL_SECRET) as fake, KeybrakeThread(tmp_path_factory.mktemp("idem")) as kb:
        kb.add_credential(fake.base_url)
        yield kb, fake.fake


attempts = st.lists(
    st.tuples(
        st.integers(0, 2),  # which Idempotency-Key
        st.sampled_from([1500, 2500, 4000]),  # amount in cents
        st.sampled_from(["run", "run", "decline", "lock429", "invalid400", "conflict409"]),
    ),
    min_size=1,
    max_size=7,
)


@settings(max_examples=examples(30), deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(script=attempts)
@example(script=[(0, 1500, "lock429"), (0, 1500, "run")])  # the issue's case, always tried
@example(script=[(0, 4000, "decline"), (0, 4000, "run"), (1, 4000, "conflict409"), (1, 4000, "run")])
def test_retries_count_exactly_what_stripe_moved(
    server: tuple[KeybrakeThread, FakeStripe], script: list[tuple[int, int, str]]
) -> None:
    kb, fake = server
    key = kb.issue({"daily_usd_cap": CAP_CENTS // 100})
    model = StripeModel()
    prefix = key["id"]  # keys unique per example: the fake remembers keys across examples
    for which, amount, behaviour in script:
        idem = f"{prefix}-{which}"
        source = "tok_chargeDeclined" if behaviour == "decline" else "tok_visa"
        before = len(fake.requests)
        fake.next_status = [UNKEPT[behaviour]] if behaviour in UNKEPT and idem not in model.kept else []
        r = httpx.post(
            f"{kb.url}/stripe/v1/charges",
            data={"amount": amount, "currency": "usd", "source": source},
            headers={"Authorization": f"Bearer {key['key']}", "Idempotency-Key": idem},
            timeout=10,
        )
        fake.next_status = []
        reached = len(fake.requests) > before
        params = (amount, source)
        if not reached:
            # Keybrake refused it before it left: only the cap may, and never for a true retry.
            body: dict[str, Any] = r.json()
            assert r.status_code == 429 and body["error"]["code"] == "spend_cap_exceeded", body
            assert model.moved + amount > CAP_CENTS and not model.replays(idem, params)
            continue
        expected = model.attempt(idem, params, behaviour)
        assert r.status_code == expected, (r.status_code, r.text)
        assert model.moved <= CAP_CENTS, "Keybrake let money past the cap"
    usage = kb.key(key["id"])["usage"]["daily_usd"]
    assert usage["reserved"] == 0
    assert round(usage["used"] * 100) == model.moved
