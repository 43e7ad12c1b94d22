"""PydanticAI + Stripe through Keybrake: a refund agent runs away, and the spend cap stops it.

A support agent is asked to refund a customer's duplicate charges. Its model (PydanticAI's own
`FunctionModel`, scripted: no LLM is called) runs away: it asks for every refund twice, and keeps
going. Every refund carries an `Idempotency-Key` derived from the run id and the step (the charge
refunded), so a repeated step is replayed by Stripe and refunds nothing more. The run has its own
vault key (`kb.run`, revoked when the block ends) with a $50 daily cap, so after two $20 refunds
the third is refused by Keybrake (Stripe 429 `spend_cap_exceeded`, `Stripe-Should-Retry: false`).
The tool turns that refusal into a final answer — "STOP: … do not retry" — not a `ModelRetry`,
which would make PydanticAI ask the model to try the refund again; the model ends the run. At the
end the run is reconstructed from Keybrake's audit log: calls forwarded, the refusal and why, USD
moved.

    pip install './client[stripe]' pydantic-ai-slim==2.68.0
    KEYBRAKE_URL=http://127.0.0.1:8080 KEYBRAKE_ADMIN_TOKEN=… python examples/pydantic_ai_stripe.py

Keybrake must hold a Stripe credential (a test-mode `sk_test_…`, or `scripts/fake-stripe`: see
examples/README.md). The script first makes the five $20 charges to refund, with a key of their own.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import stripe
from pydantic_ai import Agent, RunContext
from pydantic_ai.exceptions import UsageLimitExceeded
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import UsageLimits

from keybrake_client import Denial, Keybrake, Run, denial

if not __package__:  # run as a script (python examples/<recipe>.py): make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.recipe_common import STOP, Report, print_report, reconstruct, run_from_command_line, stop_answer

CUSTOMER = "cus_keybrake_demo"
CHARGES = 5  # duplicate charges of $20 the agent is asked to refund
CHARGE_CENTS = 2000
# The agent run's policy: refunds only, at most $25 a call, $50 a day.
POLICY: dict[str, Any] = {"daily_usd_cap": 50, "max_usd_per_call": 25, "allowed_endpoints": ["POST /v1/refunds"]}


@dataclass
class Deps:
    """What the tool needs: the run's Stripe client and Keybrake run, and the denial that stopped it."""

    stripe: stripe.StripeClient
    run: Run
    stopped: Denial | None = None
    refunds: list[str] = field(default_factory=list)


def refund_charge(ctx: RunContext[Deps], charge: str, amount_cents: int) -> str:
    """Refund `amount_cents` (minor units) of Stripe charge `charge`."""
    deps = ctx.deps
    if deps.stopped is not None:  # the run was told to stop: never call Stripe again
        return stop_answer(deps.stopped, "refund", limit="refund")
    try:
        refund = deps.stripe.v1.refunds.create(
            {"charge": charge, "amount": amount_cents},
            {
                # the same run and step always give the same key: a retried step refunds once
                "idempotency_key": deps.run.idempotency_key(f"refund-{charge}"),
                "headers": {"X-Keybrake-Step": f"step-{ctx.run_step}"},  # in the audit row's metadata
            },
        )
    except stripe.StripeError as exc:
        d = denial(exc)
        if d is None:  # Stripe's own answer (already refunded, no such charge): the model may decide
            return f"Stripe refused the refund of {charge}: {exc.user_message}"
        if d.retryable:  # e.g. enforcement_unavailable: the same refund (same key) may be tried again
            return f"Keybrake could not complete the refund of {charge} now ({d.code}): {d.message}"
        deps.stopped = d
        return stop_answer(d, "refund", limit="refund")
    deps.refunds.append(refund.id)
    return f"Refunded {amount_cents} cents of {charge}: {refund.id} ({refund.status})."


def runaway_model(charges: list[str], *, obey_stop: bool = True) -> FunctionModel:
    """A scripted model that asks for one refund per turn, over and over (twice per charge), until
    a tool answer says STOP (or forever with `obey_stop=False`, for the run's tool-call limit to end)."""
    plan = [c for c in charges for _ in range(2)]

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]
        if obey_stop and returns and str(returns[-1].content).startswith(STOP):
            return ModelResponse(parts=[TextPart(f"I stopped: {returns[-1].content}")])
        charge = plan[len(returns) % len(plan)]
        return ModelResponse(parts=[ToolCallPart("refund_charge", {"charge": charge, "amount_cents": CHARGE_CENTS})])

    return FunctionModel(respond)


def make_charges(kb: Keybrake, run_id: str, credential: str | None = None) -> list[str]:
    """The customer's duplicate charges, made through Keybrake with a key of their own."""
    policy = {"daily_usd_cap": 200, "max_usd_per_call": 25, "allowed_endpoints": ["POST /v1/charges"]}
    with kb.run(vendor="stripe", run_id=f"{run_id}-setup", policy=policy, ttl="10m", credential=credential) as setup:
        client = setup.stripe()
        return [
            client.v1.charges.create(
                {"amount": CHARGE_CENTS, "currency": "usd", "source": "tok_visa", "customer": CUSTOMER},
                {"idempotency_key": setup.idempotency_key(f"charge-{i}")},
            ).id
            for i in range(CHARGES)
        ]


def main(
    url: str,
    admin_token: str,
    *,
    run_id: str | None = None,
    obey_stop: bool = True,
    credential: str | None = None,
) -> Report:
    """Run the agent once against Keybrake at `url` and return what the audit log says about it."""
    if run_id is None:  # an empty run_id is refused by kb.run(), not replaced
        run_id = f"refunds-{uuid.uuid4().hex[:8]}"
    with Keybrake(url, admin_token) as kb:
        charges = make_charges(kb, run_id, credential)
        agent = Agent(runaway_model(charges, obey_stop=obey_stop), deps_type=Deps, tools=[refund_charge])
        prompt = f"Refund the duplicate charges of customer {CUSTOMER}: {', '.join(charges)}."
        with kb.run(vendor="stripe", run_id=run_id, policy=POLICY, ttl="15m", credential=credential) as run:
            deps = Deps(stripe=run.stripe(max_network_retries=2), run=run)
            try:
                output = agent.run_sync(prompt, deps=deps, usage_limits=UsageLimits(tool_calls_limit=8)).output
            except UsageLimitExceeded as exc:  # the backstop when a model ignores STOP
                output = f"run ended by its limit: {exc}"
        return reconstruct(run, output)


if __name__ == "__main__":
    print_report(run_from_command_line(__doc__, main))
