"""examples/pydantic_ai_stripe.py against a real Keybrake and the fake Stripe: PydanticAI's
FunctionModel runs away asking for refunds; the $50 cap stops it and the tool's STOP answer ends it."""

from __future__ import annotations

from decimal import Decimal

from examples import pydantic_ai_stripe as recipe
from keybrake_client import idempotency_key
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread


def test_the_cap_stops_the_runaway_refunds_and_the_model_ends_the_run(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    report = recipe.main(kb.url, ADMIN_TOKEN, run_id="run-pai-1")

    # the model was told to stop, not to retry: its last word is the tool's STOP answer
    assert report.output.startswith("I stopped: STOP: Keybrake refused this refund (spend_cap_exceeded")
    assert "Do not retry" in report.output
    # ch1, ch1 again (same Idempotency-Key: replayed, no new money), ch2, ch2 again, then ch3 refused
    rows = report.rows
    assert [(r.path, r.status, r.verdict) for r in rows] == [("/v1/refunds", 200, "allowed")] * 4 + [
        ("/v1/refunds", 429, "cap_exceeded")
    ]
    assert report.forwarded == 4
    assert [code for code, _ in report.refused] == ["spend_cap_exceeded"]
    assert "daily spend cap of $50.00" in report.refused[0][1]
    assert report.spent_usd == Decimal(40)
    assert [r.cost_usd for r in rows] == [Decimal(20), Decimal(0), Decimal(20), Decimal(0), Decimal(0)]
    # two refunds exist at Stripe, one per charge refunded; the third was never sent
    refunds = list(fake_stripe.refunds.values())
    assert len(refunds) == 2 and {r["amount"] for r in refunds} == {recipe.CHARGE_CENTS}
    # the charges to refund were made by a setup run of their own, oldest first
    setup = sorted(kb.audit(agent_run_id="run-pai-1-setup"), key=lambda r: str(r["id"]))
    charges = [r["vendor_object_id"] for r in setup]
    assert len(charges) == recipe.CHARGES and all(c.startswith("ch_") for c in charges)
    assert [r.form["charge"][0] for r in fake_stripe.requests if r.path == "/v1/refunds"] == [
        charges[0],
        charges[0],
        charges[1],
        charges[1],
    ]
    # each refund's Idempotency-Key is derived from the run id and the step (the charge refunded)
    steps = [charges[0], charges[0], charges[1], charges[1], charges[2]]
    assert [r.idempotency_key for r in rows] == [idempotency_key("run-pai-1", f"refund-{c}") for c in steps]
    # the agent step that made each request is in its row (the X-Keybrake-Step header)
    assert [(r.metadata or {})["headers"]["x-keybrake-step"] for r in rows] == [f"step-{n}" for n in range(1, 6)]
    # the audit rows found by agent_run_id are the run's rows; the key is revoked
    by_run = kb.audit(agent_run_id="run-pai-1")
    assert sorted(r["id"] for r in by_run) == sorted(r.id for r in rows)
    assert kb.key(report.key_id)["status"] == "revoked"


def test_a_model_that_ignores_stop_is_ended_by_the_tool_call_limit_without_another_call(
    kb: KeybrakeThread, fake_stripe: FakeStripe
) -> None:
    report = recipe.main(kb.url, ADMIN_TOKEN, run_id="run-pai-2", obey_stop=False)

    assert report.output.startswith("run ended by its limit:")
    # after the refusal the tool answered STOP without calling Stripe or Keybrake again
    assert [code for code, _ in report.refused] == ["spend_cap_exceeded"]
    assert len(report.rows) == 5 and report.forwarded == 4
    assert report.spent_usd == Decimal(40)
    assert len(fake_stripe.refunds) == 2
