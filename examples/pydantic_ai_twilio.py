"""PydanticAI + Twilio through Keybrake: an SMS agent runs away, and the daily send cap stops it.

A notifier agent texts customers that their order shipped. Its model (PydanticAI's own
`FunctionModel`, scripted: no LLM is called) runs away: it sends every text twice, and keeps
going. Twilio takes no `Idempotency-Key`, so the run's key has `dedup_window_seconds`: Keybrake
answers a repeated send with the first answer (`X-Keybrake-Deduplicated: true`) and sends nothing.
The run has its own vault key (`kb.run`, revoked when the block ends) allowing three texts a day
to `+1` numbers, so the fourth customer's text is refused by Keybrake (Twilio's error shape, 429,
code 429003, `send_cap_exceeded`). The tool turns that refusal into a final answer — "STOP: … do
not retry" — not a `ModelRetry`, and the model ends the run. At the end the run is reconstructed
from Keybrake's audit log: texts sent, repeats not sent, the refusal and why.

    pip install './client[twilio]' pydantic-ai-slim==2.68.0
    KEYBRAKE_URL=http://127.0.0.1:8080 KEYBRAKE_ADMIN_TOKEN=… python examples/pydantic_ai_twilio.py

Keybrake must hold a Twilio credential (docs/sdk-twilio.md). With a real account, use Twilio's
test credentials or numbers you own: the script texts +1 415 555 0101… from +1 415 555 0199.
"""

from __future__ import annotations

import sys
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic_ai import Agent, RunContext
from pydantic_ai.exceptions import UsageLimitExceeded
from pydantic_ai.messages import ModelMessage, ModelRequest, ModelResponse, TextPart, ToolCallPart, ToolReturnPart
from pydantic_ai.models.function import AgentInfo, FunctionModel
from pydantic_ai.usage import UsageLimits
from twilio.base.exceptions import TwilioRestException

from keybrake_client import Denial, Keybrake, denial

if not __package__:  # run as a script (python examples/<recipe>.py): make `examples` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from examples.recipe_common import STOP, Report, print_report, reconstruct, run_from_command_line, stop_answer

SENDER = "+14155550199"
CUSTOMERS = [f"+1415555010{n}" for n in range(1, 7)]
# The agent run's policy: texts to +1 numbers only, three a day, $1 a day, repeats replayed for 10 minutes.
POLICY: dict[str, Any] = {
    "daily_send_cap": 3,
    "daily_usd_cap": 1,
    "allowed_to_prefixes": ["+1"],
    "dedup_window_seconds": 600,
    "allowed_endpoints": ["POST /2010-04-01/Accounts/*/Messages.json"],
}


@dataclass
class Deps:
    """What the tool needs: the run's Twilio client, and the denial that stopped the run."""

    twilio: Any  # twilio.rest.Client on the proxy
    stopped: Denial | None = None
    sent: list[str] = field(default_factory=list)


def send_text(ctx: RunContext[Deps], to: str, body: str) -> str:
    """Send the SMS `body` to the E.164 number `to`."""
    deps = ctx.deps
    if deps.stopped is not None:  # the run was told to stop: never call Twilio again
        return stop_answer(deps.stopped, "text", verb="send", limit="sending")
    try:
        msg = deps.twilio.messages.create(to=to, from_=SENDER, body=body)
    except TwilioRestException as exc:
        d = denial(exc)
        if d is None:  # Twilio's own answer (invalid number…): the model may decide
            return f"Twilio refused the text to {to}: {exc.msg}"
        if d.retryable:
            return f"Keybrake could not send the text to {to} now ({d.code}): {d.message}"
        deps.stopped = d
        return stop_answer(d, "text", verb="send", limit="sending")
    deps.sent.append(msg.sid)
    return f"Texted {to}: {msg.sid} ({msg.status})."


def runaway_model(*, obey_stop: bool = True) -> FunctionModel:
    """A scripted model that texts each customer twice, then starts over, until a tool answer
    says STOP (or forever with `obey_stop=False`, for the run's tool-call limit to end)."""
    plan = [c for c in CUSTOMERS for _ in range(2)]

    def respond(messages: list[ModelMessage], info: AgentInfo) -> ModelResponse:
        returns = [p for m in messages if isinstance(m, ModelRequest) for p in m.parts if isinstance(p, ToolReturnPart)]
        if obey_stop and returns and str(returns[-1].content).startswith(STOP):
            return ModelResponse(parts=[TextPart(f"I stopped: {returns[-1].content}")])
        to = plan[len(returns) % len(plan)]
        return ModelResponse(parts=[ToolCallPart("send_text", {"to": to, "body": "Your order has shipped."})])

    return FunctionModel(respond)


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
        run_id = f"shipping-texts-{uuid.uuid4().hex[:8]}"
    agent = Agent(runaway_model(obey_stop=obey_stop), deps_type=Deps, tools=[send_text])
    with Keybrake(url, admin_token) as kb:
        with kb.run(vendor="twilio", run_id=run_id, policy=POLICY, ttl="15m", credential=credential) as run:
            deps = Deps(twilio=run.twilio())
            try:
                output = agent.run_sync(
                    "Tell each customer with a shipped order.", deps=deps, usage_limits=UsageLimits(tool_calls_limit=12)
                ).output
            except UsageLimitExceeded as exc:  # the backstop when a model ignores STOP
                output = f"run ended by its limit: {exc}"
        return reconstruct(run, output)


if __name__ == "__main__":
    report = run_from_command_line(__doc__, main)
    print_report(
        report, f"{report.forwarded} texts sent, {report.deduplicated} repeats not sent", places=4, steps=False
    )
