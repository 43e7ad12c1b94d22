"""PydanticAI + Stripe through Keybrake: a person approves (or denies) the big refund.

A support agent refunds two charges of a customer: $30 and $250. Its model (PydanticAI's own
`FunctionModel`, scripted: no LLM is called) asks for one refund per turn. The run has its own
vault key (`kb.run`, revoked when the block ends) whose policy has a $1,000 daily cap and
`approval_above_usd: 100`: the $30 refund goes straight through; the $250 one is reserved against
the cap and then held, with the tool's Stripe call waiting, until a person decides
(docs/approvals.md). The tool's Stripe client waits longer than the hold
(`stripe.RequestsClient(timeout=…)`), so the SDK never gives up first. The tool maps the outcome:

- approved: Keybrake forwards the refund and the tool returns it;
- denied (`approval_denied`): the tool's final answer is "STOP: a person denied this refund
  (<their reason>); do not retry" — never a `ModelRetry`, which would ask the model to try again;
- not decided in time (`approval_timeout`, `denial(exc).ask_again`): the tool tells the model it
  may ask once more; a second timeout is a STOP too.

At the end the run is read back from Keybrake's audit log: each call, and for the held one its
approval's state, who decided and how long the call waited.

    pip install './client[stripe]' pydantic-ai-slim==2.68.0
    KEYBRAKE_URL=http://127.0.0.1:8080 KEYBRAKE_ADMIN_TOKEN=… python examples/pydantic_ai_approval.py

So that it runs unattended, the script also plays the operator (`--decide approve`, the default, or
`--decide deny`): a thread that approves or denies the run's pending approvals with the client
library's `kb.approvals` (the admin API), as `keybrake approvals approve|deny` or a Slack link
would. With `--decide none` it waits for you: `keybrake approvals list --state pending`, then
approve or deny it within `--approval-timeout-seconds` (default 120). Keybrake must hold a Stripe
credential (a test-mode `sk_test_…`, or `scripts/fake-stripe`: see examples/README.md). The script
first makes the two charges to refund, with a key of their own.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
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

from keybrake_client import Denial, Keybrake, KeybrakeAPIError, Run, denial
from keybrake_client.models import Approval

if not __package__:  # run as a script (python examples/<recipe>.py): make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.recipe_common import STOP, Report, print_report, reconstruct, run_from_command_line, stop_answer

CUSTOMER = "cus_keybrake_demo"
SMALL_CENTS, BIG_CENTS = 3000, 25000  # the two charges to refund: $30 goes through, $250 waits
REFUNDED = "Refunded"  # how the tool's answer for a refund made begins
NOT_DECIDED = "Not decided"  # … for a refund no one decided on in time, which may be asked for once more
APPROVAL_TIMEOUT_S = 120
# The agent run's policy: refunds only, $1,000 a day; a person approves any refund above $100.
POLICY: dict[str, Any] = {
    "daily_usd_cap": 1000,
    "approval_above_usd": 100,
    "approval_timeout_seconds": APPROVAL_TIMEOUT_S,
    "allowed_endpoints": ["POST /v1/refunds"],
}


@dataclass
class Deps:
    """What the tool needs: the run's Stripe client and Keybrake run, and what it has told the model."""

    stripe: stripe.StripeClient
    run: Run
    stopped: str | None = None  # the STOP answer that ended the run: given again, Stripe never called
    asked_again: set[str] = field(default_factory=set)  # charges already asked for once more
    refunds: list[str] = field(default_factory=list)


def refund_charge(ctx: RunContext[Deps], charge: str, amount_cents: int) -> str:
    """Refund `amount_cents` (minor units) of Stripe charge `charge`. A refund above $100 waits
    until a person approves it."""
    deps = ctx.deps
    if deps.stopped is not None:  # the run was told to stop: never call Stripe again
        return deps.stopped
    try:
        refund = deps.stripe.v1.refunds.create(
            {"charge": charge, "amount": amount_cents},
            {
                # the same run and step always give the same key: a refund asked for again after a
                # timeout (never sent) is held again; one approved and sent is never sent twice
                "idempotency_key": deps.run.idempotency_key(f"refund-{charge}"),
                "headers": {"X-Keybrake-Step": f"step-{ctx.run_step}"},  # in the audit row's metadata
            },
        )
    except stripe.StripeError as exc:
        d = denial(exc)
        if d is None:  # Stripe's own answer (already refunded, no such charge): the model may decide
            return f"Stripe refused the refund of {charge}: {exc.user_message}"
        if d.kind == "approval":
            return approval_answer(deps, charge, d)
        if d.retryable:  # e.g. enforcement_unavailable: the same refund (same key) may be tried again
            return f"Keybrake could not complete the refund of {charge} now ({d.code}): {d.message}"
        deps.stopped = stop_answer(d, "refund", limit="refund")
        return deps.stopped
    deps.refunds.append(refund.id)
    return f"{REFUNDED} {amount_cents} cents of {charge}: {refund.id} ({refund.status})."


def approval_answer(deps: Deps, charge: str, d: Denial) -> str:
    """The tool's answer when the refund waited for a person and was not sent: once after a
    timeout the model may ask again; a denial, or a second timeout, ends the run."""
    # approval_timeout: no one decided in time; approval_queue_full: too many calls of the run wait
    unanswered = "no one decided in time" if d.code == "approval_timeout" else "too many calls already wait"
    if d.ask_again and charge not in deps.asked_again:  # asking again (held again) can help
        deps.asked_again.add(charge)
        return (
            f"{NOT_DECIDED}: the refund of {charge} needs a person's approval and {unanswered} ({d.code}); "
            "nothing was refunded. You may ask for it once more."
        )
    if d.code == "approval_denied":
        deps.stopped = (
            f"{STOP}: a person denied this refund ({person_reason(d)}); do not retry it and make no "
            "other refund in this run: tell the user the refund was denied and end the run."
        )
    else:
        deps.stopped = (
            f"{STOP}: the refund of {charge} was asked for twice and not approved: {unanswered} ({d.code}); "
            "nothing was refunded. Do not retry it: tell the user it needs a person's approval and end the run."
        )
    return deps.stopped


def person_reason(d: Denial) -> str:
    """The reason the person gave, as Keybrake's answer quotes it ("… a person denied it (<reason>).
    …"); the whole message when it quotes none (a key revoked or expired while the call waited)."""
    quoted = re.search(r"a person denied it \((.*)\)\. ", d.message)
    return quoted[1] if quoted else d.message


def support_model(refunds: list[tuple[str, int]]) -> FunctionModel:
    """A scripted model that asks for one refund per turn: the next one after a refund made, the
    same one again after "Not decided", and ends the run on any other answer (STOP among them)."""

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]
        last = str(returns[-1].content) if returns else None
        if last is not None and not last.startswith((REFUNDED, NOT_DECIDED)):
            return ModelResponse(parts=[TextPart(f"I stopped: {last}")])
        done = sum(1 for r in returns if str(r.content).startswith(REFUNDED))
        if done == len(refunds):
            return ModelResponse(parts=[TextPart(f"All {done} refunds are done.")])
        charge, cents = refunds[done]
        return ModelResponse(parts=[ToolCallPart("refund_charge", {"charge": charge, "amount_cents": cents})])

    return FunctionModel(respond)


def make_charges(kb: Keybrake, run_id: str, credential: str | None = None) -> list[tuple[str, int]]:
    """The customer's two charges, made through Keybrake with a key of their own: (id, cents)."""
    policy = {"daily_usd_cap": 400, "allowed_endpoints": ["POST /v1/charges"]}
    with kb.run(vendor="stripe", run_id=f"{run_id}-setup", policy=policy, ttl="10m", credential=credential) as setup:
        client = setup.stripe()
        return [
            (
                client.v1.charges.create(
                    {"amount": cents, "currency": "usd", "source": "tok_visa", "customer": CUSTOMER},
                    {"idempotency_key": setup.idempotency_key(f"charge-{i}")},
                ).id,
                cents,
            )
            for i, cents in enumerate((SMALL_CENTS, BIG_CENTS))
        ]


class Operator:
    """The person who decides, played by a thread for the demo: every `poll_s` it lists the run's
    pending approvals (`kb.approvals.list`: `GET /v1/approvals?state=pending`, admin token) and
    approves or denies each (`POST /v1/approvals/{id}/approve|deny`) with `reason`, as
    `keybrake approvals approve|deny` or a Slack link would. `decided`: the approvals it decided."""

    def __init__(
        self, url: str, admin_token: str, key_id: str, decision: str, reason: str, poll_s: float = 0.2
    ) -> None:
        self.key_id, self.decision, self.reason, self.poll_s = key_id, decision, reason, poll_s
        self.kb = Keybrake(url, admin_token)  # its own client: the agent's thread uses the other one
        self.decided: list[Approval] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, name="operator", daemon=True)

    def __enter__(self) -> Operator:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join()
        self.kb.close()

    def _loop(self) -> None:
        while not self.stop.wait(self.poll_s):
            for approval in self.kb.approvals.list(state="pending", key_id=self.key_id).data:
                try:
                    if self.decision == "approve":
                        self.decided.append(self.kb.approvals.approve(approval.id, self.reason))
                    else:
                        self.decided.append(self.kb.approvals.deny(approval.id, self.reason))
                except KeybrakeAPIError as exc:
                    if exc.status != 409:  # 409: its hold ended (or someone decided) first
                        raise


def main(
    url: str,
    admin_token: str,
    *,
    run_id: str | None = None,
    credential: str | None = None,
    decide: str | None = None,
    reason: str | None = None,
    approval_timeout_seconds: int = APPROVAL_TIMEOUT_S,
) -> Report:
    """Run the agent once against Keybrake at `url` and return what the audit log says about it.
    `decide`: "approve" or "deny" plays the operator (with `reason`); None (or "none") leaves the
    decision to someone else (a person, the CLI, a test)."""
    if run_id is None:  # an empty run_id is refused by kb.run(), not replaced
        run_id = f"refunds-{uuid.uuid4().hex[:8]}"
    policy = {**POLICY, "approval_timeout_seconds": approval_timeout_seconds}
    with Keybrake(url, admin_token) as kb:
        charges = make_charges(kb, run_id, credential)
        agent = Agent(support_model(charges), deps_type=Deps, tools=[refund_charge])
        prompt = f"Refund customer {CUSTOMER}'s charges: {', '.join(c for c, _ in charges)}."
        with kb.run(vendor="stripe", run_id=run_id, policy=policy, ttl="30m", credential=credential) as run:
            # the SDK waits longer than the hold: one that gave up first would cancel it (docs/approvals.md)
            http = stripe.RequestsClient(timeout=approval_timeout_seconds + 30)
            deps = Deps(stripe=run.stripe(http_client=http, max_network_retries=2), run=run)
            try:
                with _operator(url, admin_token, run.key.id, decide, reason):
                    output = agent.run_sync(prompt, deps=deps, usage_limits=UsageLimits(tool_calls_limit=6)).output
            except UsageLimitExceeded as exc:  # the backstop when a model ignores STOP
                output = f"run ended by its limit: {exc}"
        return reconstruct(run, output)


def _operator(url: str, admin_token: str, key_id: str, decide: str | None, reason: str | None) -> Any:
    if decide in (None, "none"):
        return _Nobody()
    default = "checked the order" if decide == "approve" else "this customer's refunds need a manager"
    return Operator(url, admin_token, key_id, str(decide), reason or default)


class _Nobody:
    """No one plays the operator: say so, and how to decide, before the refund waits."""

    def __enter__(self) -> None:
        print(
            "the big refund will wait for a person: decide it in another shell with "
            "`.venv/bin/keybrake approvals list --state pending`, then `approvals approve|deny <id>`",
            flush=True,
        )
        return None

    def __exit__(self, *exc: object) -> None:
        return None


def print_approvals(report: Report) -> None:
    """Each held call's approval as its audit row tells it: state, who decided, why, how long it waited."""
    for row in report.rows:
        approval = row.approval  # None: the call was never held
        if approval:
            why = f" ({approval['reason']})" if approval.get("reason") else ""
            print(
                f"  approval {approval['id']}: {approval['state']} by {approval.get('decided_by')}{why}, "
                f"waited {approval.get('waited_ms')} ms"
            )


def _options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--decide",
        choices=("approve", "deny", "none"),
        default="approve",
        help="play the operator and approve or deny the held refund (default approve); none: you decide",
    )
    parser.add_argument("--reason", default=None, help="the operator's reason for the decision")
    parser.add_argument(
        "--approval-timeout-seconds",
        type=int,
        default=APPROVAL_TIMEOUT_S,
        help=f"how long the held refund waits for a decision (default {APPROVAL_TIMEOUT_S})",
    )


if __name__ == "__main__":
    report = run_from_command_line(__doc__, main, _options)
    print_report(report)
    print_approvals(report)
