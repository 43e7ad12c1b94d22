"""A recipe's tool answers a retryable refusal with "could not complete now", which invites the
model to call the tool again. When the refusal was `upstream_timeout` the vendor may have made
the payment; the model's next call is a new tool call with a new call id, so the retry must
still carry the first call's Idempotency-Key or the payment is made twice."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from examples import langchain_stripe as recipe
from keybrake_client import Keybrake
from tests.fakes.stripe_server import FakeStripe
from tests.harness import ADMIN_TOKEN, KeybrakeThread


def _call(call_id: str, invoice: str) -> dict[str, object]:
    args = {"amount_cents": recipe.PAYMENT_CENTS, "invoice": invoice}
    return {"name": "pay", "args": args, "id": call_id, "type": "tool_call"}


def _wait_for(predicate: object, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():  # type: ignore[operator]
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_langchain_a_payment_retried_after_a_timeout_is_made_once(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    with KeybrakeThread(tmp_path / "data", upstream_timeout_s=1.0) as kb:
        kb.add_credential(fake_stripe.base_url)
        with Keybrake(kb.url, ADMIN_TOKEN) as client:
            with client.run(vendor="stripe", run_id="run-lc-retry", policy=recipe.POLICY, ttl="10m") as run:
                pay = recipe.payment_tool(run.stripe(max_network_retries=2), run)
                held = threading.Event()
                fake_stripe.hang = held  # Stripe answers late: Keybrake times out, the payment is made
                first = pay.invoke(_call("call_1", "inv-1"))
                held.set()
                _wait_for(lambda: len(fake_stripe.payment_intents) >= 1)
                fake_stripe.hang = None
                # the model does what the answer invites: it pays the same invoice again
                second = pay.invoke(_call("call_2", "inv-1"))
    assert "could not complete the payment now (upstream_timeout)" in str(first.content), first.content
    paid = [pi for pi in fake_stripe.payment_intents.values() if pi["metadata"].get("invoice") == "inv-1"]
    assert len(paid) == 1, (second.content, [pi["id"] for pi in paid])


def test_openai_agents_a_charge_retried_after_a_timeout_is_made_once(tmp_path: Path, fake_stripe: FakeStripe) -> None:
    from agents import Agent, RunConfig, Runner, set_tracing_disabled
    from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call

    from examples import openai_agents_stripe as oai

    held = threading.Event()
    answers: list[str] = []

    def respond(call: ModelCall) -> Any:
        items = call.input if isinstance(call.input, list) else []
        outputs = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
        answers[:] = [str(o["output"]) for o in outputs]
        if len(outputs) == 1:  # Stripe answers the first charge late: it was made
            held.set()
            _wait_for(lambda: len(fake_stripe.charges) >= 1)
            fake_stripe.hang = None
        if len(outputs) >= 2:
            return [assistant_message("done")]
        args = {"amount_cents": oai.TOP_UP_CENTS, "description": "prepaid balance top-up"}
        return [function_call("charge_customer", args, call_id=f"call_{len(outputs) + 1}")]

    set_tracing_disabled(True)
    agent = Agent[oai.Deps](
        name="billing", instructions="Top up.", model=ScriptedModel([ModelStep.respond(respond) for _ in range(4)]),
        tools=[oai.charge_customer],
    )  # fmt: skip
    with KeybrakeThread(tmp_path / "data", upstream_timeout_s=1.0) as kb:
        kb.add_credential(fake_stripe.base_url)
        with Keybrake(kb.url, ADMIN_TOKEN) as client:
            with client.run(vendor="stripe", run_id="run-oai-retry", policy=oai.POLICY, ttl="10m") as run:
                deps = oai.Deps(stripe=run.stripe(max_network_retries=2), run=run)
                fake_stripe.hang = held
                Runner.run_sync(
                    agent, "Top up.", context=deps, max_turns=5, run_config=RunConfig(tracing_disabled=True)
                )
    assert "could not complete the charge now (upstream_timeout)" in answers[0], answers
    assert len(fake_stripe.charges) == 1, answers
