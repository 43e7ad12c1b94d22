"""examples/openai_agents_stripe.py against a real Keybrake and the fake Stripe: the SDK's
ScriptedModel runs away charging $30 a turn; the $100 cap stops it and the STOP answer ends it."""

from __future__ import annotations

from decimal import Decimal

from examples import openai_agents_stripe as recipe
from keybrake_client import idempotency_key
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread


def test_the_cap_stops_the_runaway_charges_and_the_model_ends_the_run(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    report = recipe.main(kb.url, ADMIN_TOKEN, run_id="run-oai-1")

    assert report.output.startswith("I stopped: STOP: Keybrake refused this charge (spend_cap_exceeded")
    assert "Do not retry" in report.output
    rows = report.rows
    assert [(r.path, r.status, r.verdict) for r in rows] == [("/v1/charges", 200, "allowed")] * 3 + [
        ("/v1/charges", 429, "cap_exceeded")
    ]
    assert report.forwarded == 3
    assert [code for code, _ in report.refused] == ["spend_cap_exceeded"]
    assert "daily spend cap of $100.00" in report.refused[0][1]
    assert report.spent_usd == Decimal(90)
    assert [r.cost_usd for r in rows] == [Decimal(30)] * 3 + [Decimal(0)]
    # three charges exist at Stripe; the fourth was never sent
    assert len(fake_stripe.charges) == 3
    assert len([r for r in fake_stripe.requests if r.path == "/v1/charges"]) == 3
    # each charge's Idempotency-Key is derived from the run id and the step (the model's call id)
    steps = [f"call_{n}" for n in range(1, 5)]
    assert [r.idempotency_key for r in rows] == [idempotency_key("run-oai-1", s) for s in steps]
    assert [(r.metadata or {}).get("headers", {}).get("x-keybrake-step") for r in rows] == steps
    by_run = kb.audit(agent_run_id="run-oai-1")
    assert sorted(r["id"] for r in by_run) == sorted(r.id for r in rows)
    assert kb.key(report.key_id)["status"] == "revoked"


def test_a_model_that_ignores_stop_is_ended_by_max_turns_without_another_call(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    report = recipe.main(kb.url, ADMIN_TOKEN, run_id="run-oai-2", obey_stop=False)

    assert report.output.startswith("run ended by its limit:")
    assert [code for code, _ in report.refused] == ["spend_cap_exceeded"]
    assert len(report.rows) == 4 and report.forwarded == 3
    assert report.spent_usd == Decimal(90)
    assert len(fake_stripe.charges) == 3
