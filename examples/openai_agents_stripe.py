"""OpenAI Agents SDK + Stripe through Keybrake: a top-up agent runs away, and the spend cap stops it.

A billing agent tops up a customer's prepaid balance with a $30 card charge. Its model (the SDK's
own test double `agents.testing.ScriptedModel`: no OpenAI call, tracing off) runs away and keeps
charging. The run has its own vault key (`kb.run`, revoked when the block ends) with a $100
daily cap, so the fourth charge is refused by Keybrake (Stripe 429 `spend_cap_exceeded`,
`Stripe-Should-Retry: false`). The function tool turns the refusal into a final answer —
"STOP: … do not retry" — and the model ends the run; `max_turns` is the backstop for a model that
would not. Each charge's `Idempotency-Key` is derived from the run id and the step, here the
model's tool call id (one call id is one invocation for the life of a run, so a replayed step
charges once); a charge that ended in a retryable refusal (`upstream_timeout`: Stripe may have
made it) keeps its key, and the model's retry of it (a new call id) sends that key again. At the
end the run is reconstructed from Keybrake's audit log.

    pip install './client[stripe]' openai-agents==0.24.0
    KEYBRAKE_URL=http://127.0.0.1:8080 KEYBRAKE_ADMIN_TOKEN=… python examples/openai_agents_stripe.py

Keybrake must hold a Stripe credential (a test-mode `sk_test_…`, or `scripts/fake-stripe`: see
examples/README.md). For a stop the model cannot overrule, give the Agent a `tool_use_behavior`
function that ends the run when a tool answer begins with STOP.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stripe
from agents import Agent, MaxTurnsExceeded, RunConfig, Runner, function_tool, set_tracing_disabled
from agents.testing import ModelCall, ModelStep, ScriptedModel, assistant_message, function_call
from agents.tool_context import ToolContext

from keybrake_client import Denial, Keybrake, Run, denial

if not __package__:  # run as a script (python examples/<recipe>.py): make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.recipe_common import STOP, Report, print_report, reconstruct, run_from_command_line, stop_answer

CUSTOMER = "cus_keybrake_demo"
TOP_UP_CENTS = 3000
# The agent run's policy: charges only, at most $50 a call, $100 a day.
POLICY: dict[str, Any] = {"daily_usd_cap": 100, "max_usd_per_call": 50, "allowed_endpoints": ["POST /v1/charges"]}
MAX_TURNS = 10


@dataclass
class Deps:
    """The run context: the run's Stripe client and Keybrake run, and the denial that stopped it."""

    stripe: stripe.StripeClient
    run: Run
    stopped: Denial | None = None
    charges: list[str] = field(default_factory=list)
    # (amount, description) → the Idempotency-Key of a charge whose outcome is unknown (it ended
    # in a retryable refusal such as upstream_timeout: Stripe may have made it). The model's retry
    # is a new tool call with a new call id; it must send this key, not a new one.
    unsettled: dict[tuple[int, str], str] = field(default_factory=dict)


@function_tool
def charge_customer(ctx: ToolContext[Deps], amount_cents: int, description: str) -> str:
    """Charge the customer's card `amount_cents` (minor units, USD) to top up their balance."""
    deps = ctx.context
    if deps.stopped is not None:  # the run was told to stop: never call Stripe again
        return stop_answer(deps.stopped, "charge")
    what = (amount_cents, description)
    key = deps.unsettled.pop(what, None) or deps.run.idempotency_key(ctx.tool_call_id)
    try:
        charge = deps.stripe.v1.charges.create(
            {"amount": amount_cents, "currency": "usd", "source": "tok_visa", "customer": CUSTOMER,
             "description": description},
            {"idempotency_key": key, "headers": {"X-Keybrake-Step": ctx.tool_call_id}},
        )  # fmt: skip
    except stripe.StripeError as exc:
        d = denial(exc)
        if d is None:  # Stripe's own answer (card declined…): the model may decide
            return f"Stripe refused the charge: {exc.user_message}"
        if d.retryable:  # e.g. upstream_timeout: the model's retry of this charge sends the same key
            deps.unsettled[what] = key
            return f"Keybrake could not complete the charge now ({d.code}): {d.message}"
        deps.stopped = d
        return stop_answer(d, "charge")
    deps.charges.append(charge.id)
    return f"Charged {amount_cents} cents: {charge.id} ({charge.status})."


def runaway_model(*, obey_stop: bool = True, steps: int = MAX_TURNS + 2) -> ScriptedModel:
    """A scripted model that charges $30 on every turn until a tool answer says STOP (or forever
    with `obey_stop=False`, for `max_turns` to end)."""

    def respond(call: ModelCall) -> Any:
        items = call.input if isinstance(call.input, list) else []
        outputs = [i for i in items if isinstance(i, dict) and i.get("type") == "function_call_output"]
        if obey_stop and outputs and str(outputs[-1]["output"]).startswith(STOP):
            return [assistant_message(f"I stopped: {outputs[-1]['output']}")]
        args = {"amount_cents": TOP_UP_CENTS, "description": "prepaid balance top-up"}
        return [function_call("charge_customer", args, call_id=f"call_{len(outputs) + 1}")]

    return ScriptedModel([ModelStep.respond(respond) for _ in range(steps)])


def main(
    url: str,
    admin_token: str,
    *,
    run_id: str | None = None,
    obey_stop: bool = True,
    credential: str | None = None,
) -> Report:
    """Run the agent once against Keybrake at `url` and return what the audit log says about it."""
    set_tracing_disabled(True)  # nothing leaves the machine but the calls to Keybrake
    if run_id is None:  # an empty run_id is refused by kb.run(), not replaced
        run_id = f"top-up-{uuid.uuid4().hex[:8]}"
    agent = Agent[Deps](
        name="billing",
        instructions="Top up the customer's prepaid balance with charge_customer.",
        model=runaway_model(obey_stop=obey_stop),
        tools=[charge_customer],
    )
    with Keybrake(url, admin_token) as kb:
        with kb.run(vendor="stripe", run_id=run_id, policy=POLICY, ttl="15m", credential=credential) as run:
            deps = Deps(stripe=run.stripe(max_network_retries=2), run=run)
            try:
                result = Runner.run_sync(
                    agent, f"Top up {CUSTOMER}'s balance.", context=deps, max_turns=MAX_TURNS,
                    run_config=RunConfig(tracing_disabled=True),
                )  # fmt: skip
                output = str(result.final_output)
            except MaxTurnsExceeded as exc:  # the backstop when a model ignores STOP
                output = f"run ended by its limit: {exc}"
        return reconstruct(run, output)


if __name__ == "__main__":
    print_report(run_from_command_line(__doc__, main))
