"""LangChain + Stripe through Keybrake: a payment agent runs away, and the spend cap stops it.

An agent pays a supplier's invoices with confirmed $25 PaymentIntents, in a minimal tool-calling
loop around a LangChain chat model (`GenericFakeChatModel` from langchain-core, fed by a script
that reads the conversation: no LLM is called) and a `@tool`. The model runs away and keeps
paying. The run has its own vault key (`kb.run`, revoked when the block ends) with a $60 daily
cap, so the third payment is refused by Keybrake (Stripe 429 `spend_cap_exceeded`,
`Stripe-Should-Retry: false`). The tool answers with a `ToolMessage` whose content is a final
"STOP: … do not retry" for the model and whose artifact is the structured denial; the model ends
the loop (a step limit is the backstop). Each payment's `Idempotency-Key` is derived from the run
id and the step, here the invoice paid: never the model's tool call id, which is new on every call,
so a payment retried after `upstream_timeout` (the vendor may have made it) would be made twice.
At the end the run is reconstructed from Keybrake's audit log.

    pip install './client[stripe]' langchain-core==1.8.1
    KEYBRAKE_URL=http://127.0.0.1:8080 KEYBRAKE_ADMIN_TOKEN=… python examples/langchain_stripe.py

Keybrake must hold a Stripe credential (a test-mode `sk_test_…`, or `scripts/fake-stripe`: see
examples/README.md). The same tool works in any LangChain or LangGraph agent: bind it with
`model.bind_tools([pay])`.
"""

from __future__ import annotations

import sys
import uuid
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Annotated, Any

import stripe
from langchain_core.language_models.fake_chat_models import GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, ToolMessage
from langchain_core.tools import BaseTool, InjectedToolCallId, tool

from keybrake_client import Denial, Keybrake, Run, denial

if not __package__:  # run as a script (python examples/<recipe>.py): make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.recipe_common import STOP, Report, print_report, reconstruct, run_from_command_line, stop_answer

CUSTOMER = "cus_keybrake_demo"
PAYMENT_CENTS = 2500
# The agent run's policy: PaymentIntents only, at most $30 a call, $60 a day.
POLICY: dict[str, Any] = {
    "daily_usd_cap": 60,
    "max_usd_per_call": 30,
    "allowed_endpoints": ["POST /v1/payment_intents"],
}
MAX_STEPS = 10


class RunawayLoop(RuntimeError):
    """The agent loop reached its step limit without the model ending it."""


def payment_tool(client: stripe.StripeClient, run: Run) -> BaseTool:
    """The `pay` tool for one run: `client` is the run's Stripe client, `run` its keybrake_client.Run."""
    stopped: list[Denial] = []

    @tool(response_format="content_and_artifact")
    def pay(amount_cents: int, invoice: str, tool_call_id: Annotated[str, InjectedToolCallId]) -> tuple[str, Any]:
        """Pay invoice `invoice` with a confirmed card PaymentIntent of `amount_cents` (minor units, USD)."""
        if stopped:  # the run was told to stop: never call Stripe again
            return stop_answer(stopped[0], "payment"), asdict(stopped[0])
        try:
            pi = client.v1.payment_intents.create(
                {"amount": amount_cents, "currency": "usd", "customer": CUSTOMER, "payment_method": "pm_card_visa",
                 "confirm": True, "metadata": {"invoice": invoice}},
                # the step is the invoice, not the model's call id: a retry is a new call with a new id
                {"idempotency_key": run.idempotency_key(f"pay-{invoice}"),
                 "headers": {"X-Keybrake-Step": tool_call_id}},
            )  # fmt: skip
        except stripe.StripeError as exc:
            d = denial(exc)
            if d is None:  # Stripe's own answer (card declined…): the model may decide
                return f"Stripe refused the payment: {exc.user_message}", None
            if d.retryable:  # e.g. upstream_timeout: paying this invoice again sends the same key
                return f"Keybrake could not complete the payment now ({d.code}): {d.message}", asdict(d)
            stopped.append(d)
            return stop_answer(d, "payment"), asdict(d)
        return f"Paid {invoice}: {pi.id} ({pi.status}).", {"id": pi.id}

    return pay


def runaway_script(history: list[BaseMessage], *, obey_stop: bool = True) -> Iterator[AIMessage]:
    """The fake model's answers, one per turn: pay another invoice, until the last tool answer
    says STOP (or forever with `obey_stop=False`, for the loop's step limit to end)."""
    n = 0
    while True:
        last = history[-1]
        if obey_stop and isinstance(last, ToolMessage) and str(last.content).startswith(STOP):
            yield AIMessage(content=f"I stopped: {last.content}")
            return
        n += 1
        call = {"name": "pay", "args": {"amount_cents": PAYMENT_CENTS, "invoice": f"inv-{n}"}, "id": f"call_{n}"}
        yield AIMessage(content="", tool_calls=[{**call, "type": "tool_call"}])


def run_agent(history: list[BaseMessage], model: GenericFakeChatModel, tools: list[BaseTool]) -> str:
    """A minimal tool-calling loop: ask the model, run the tools it calls, until it answers in text."""
    by_name = {t.name: t for t in tools}
    for _ in range(MAX_STEPS):
        ai = model.invoke(history)
        history.append(ai)
        if not isinstance(ai, AIMessage) or not ai.tool_calls:
            return str(ai.content)
        for call in ai.tool_calls:
            history.append(by_name[call["name"]].invoke({**call, "type": "tool_call"}))
    raise RunawayLoop(f"no final answer after {MAX_STEPS} steps")


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
        run_id = f"invoices-{uuid.uuid4().hex[:8]}"
    history: list[BaseMessage] = [HumanMessage(f"Pay the open invoices of supplier {CUSTOMER}.")]
    model = GenericFakeChatModel(messages=runaway_script(history, obey_stop=obey_stop))
    with Keybrake(url, admin_token) as kb:
        with kb.run(vendor="stripe", run_id=run_id, policy=POLICY, ttl="15m", credential=credential) as run:
            tools = [payment_tool(run.stripe(max_network_retries=2), run)]
            try:
                output = run_agent(history, model, tools)
            except RunawayLoop as exc:  # the backstop when a model ignores STOP
                output = f"run ended by its limit: {exc}"
        return reconstruct(run, output)


if __name__ == "__main__":
    print_report(run_from_command_line(__doc__, main))
