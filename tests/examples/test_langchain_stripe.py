"""examples/langchain_stripe.py against a real Keybrake and the fake Stripe: GenericFakeChatModel
runs away paying $25 invoices; the $60 cap stops it and the STOP answer ends the loop."""

from __future__ import annotations

from decimal import Decimal

from examples import langchain_stripe as recipe
from keybrake_client import idempotency_key
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread


def test_the_cap_stops_the_runaway_payments_and_the_model_ends_the_loop(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    report = recipe.main(kb.url, ADMIN_TOKEN, run_id="run-lc-1")

    assert report.output.startswith("I stopped: STOP: Keybrake refused this payment (spend_cap_exceeded")
    assert "Do not retry" in report.output
    rows = report.rows
    assert [(r.path, r.status, r.verdict) for r in rows] == [("/v1/payment_intents", 200, "allowed")] * 2 + [
        ("/v1/payment_intents", 429, "cap_exceeded")
    ]
    assert report.forwarded == 2
    assert [code for code, _ in report.refused] == ["spend_cap_exceeded"]
    assert "daily spend cap of $60.00" in report.refused[0][1]
    assert report.spent_usd == Decimal(50)
    assert [r.cost_usd for r in rows] == [Decimal(25)] * 2 + [Decimal(0)]
    intents = list(fake_stripe.payment_intents.values())
    assert len(intents) == 2 and {pi["status"] for pi in intents} == {"succeeded"}
    steps = ["pay-inv-1", "pay-inv-2", "pay-inv-3"]  # the invoice paid, never the model's call id
    assert [r.idempotency_key for r in rows] == [idempotency_key("run-lc-1", s) for s in steps]
    by_run = kb.audit(agent_run_id="run-lc-1")
    assert sorted(r["id"] for r in by_run) == sorted(r.id for r in rows)
    assert kb.key(report.key_id)["status"] == "revoked"


def test_a_model_that_ignores_stop_is_ended_by_the_step_limit_without_another_call(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    report = recipe.main(kb.url, ADMIN_TOKEN, run_id="run-lc-2", obey_stop=False)

    assert report.output == f"run ended by its limit: no final answer after {recipe.MAX_STEPS} steps"
    assert [code for code, _ in report.refused] == ["spend_cap_exceeded"]
    assert len(report.rows) == 3 and report.forwarded == 2
    assert report.spent_usd == Decimal(50)
    assert len(fake_stripe.payment_intents) == 2
