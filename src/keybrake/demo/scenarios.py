"""The scripted runaway agents: what each one calls, against which sandbox, under which policy.

A scenario is one money-moving call repeated: the agent is stuck in a loop and sends it again and
again. `request` builds attempt *n*'s call for a vault key; `moved_usd` reads from the sandbox what
the account really moved (refunds paid out, messages and emails billed) — the "without Keybrake" figure is
that same reading after running the loop straight at a fresh sandbox with the real secret.
"""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from collections.abc import Callable, Collection
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from keybrake.demo.sandbox import Sandbox, object_id
from keybrake.demo.sandbox_resend import EMAIL_USD, ResendSandbox
from keybrake.demo.sandbox_stripe import StripeSandbox
from keybrake.demo.sandbox_twilio import TwilioSandbox


@dataclass(frozen=True)
class Call:
    """One HTTP call of the agent: `path` below the vendor's base URL, a `body` (a dict is sent
    form-encoded, a str as it is: give its Content-Type in `headers`), `headers`."""

    method: str
    path: str
    body: dict[str, str] | str
    headers: dict[str, str]


@dataclass(frozen=True)
class Scenario:
    """A runaway agent.

    `story`: one line saying what the agent does wrong; `call_text`: the call, for people;
    `cap_usd` and `attempts`: the defaults of `--cap` and `--attempts`.
    `sandbox()` makes a fresh sandbox; `seed(sandbox)` puts what the agent acts on into it and
    returns the ids the calls name (`ctx`); `credential(sandbox)` is the admin API's credential body;
    `policy(ctx, cap)` the vault key's policy; `request(sandbox, ctx, key_id, secret)` one attempt
    (`secret`: the vault key through Keybrake, the real secret without it); `moved_usd(sandbox)`
    what the sandbox account really moved, in USD; `real_secret(sandbox)` the secret a call
    straight at the sandbox carries. `settle(sandbox)`, when set: the vendor prices the calls after
    the answer (Twilio's `price` arrives once a message is sent); the demo calls it after the loop
    and waits for Keybrake's reconciliation to read the real price. `server_env`: settings for
    `keybrake serve`. `objects(sandbox)`: the ids of what the sandbox created (refunds, messages,
    emails), which the audit rows' `vendor_object_id` must name. `sends(sandbox)`, when set: what the
    vendor counts toward `daily_send_cap` (messages, email recipients) and bills, `sends_word` what
    they are; `send_cap` the default of `--send-cap` (None: the key has no `daily_send_cap`).
    """

    name: str
    vendor: str
    story: str
    call_text: str
    cap_usd: Decimal
    attempts: int
    sandbox: Callable[[], Sandbox]
    seed: Callable[[Any], dict[str, str]]
    credential: Callable[[Any], dict[str, Any]]
    policy: Callable[[dict[str, str], Decimal], dict[str, Any]]
    request: Callable[[Any, dict[str, str], str, str], Call]
    moved_usd: Callable[[Any], Decimal]
    real_secret: Callable[[Any], str]
    objects: Callable[[Any], Collection[str]]
    settle: Callable[[Any], object] | None = None
    server_env: tuple[tuple[str, str], ...] = ()
    sends: Callable[[Any], int] | None = None
    sends_word: str = ""
    send_cap: int | None = None


# -- refund-loop: a support agent refunding the same order again and again ---------------------

ORDER_MINOR = 250_000  # a $2,500.00 order
REFUND_MINOR = 2_500  # a $25.00 goodwill refund


def _refund_seed(sb: StripeSandbox) -> dict[str, str]:
    customer = object_id("cus_", 14)
    pi = sb.seed_payment(amount=ORDER_MINOR, currency="usd", customer=customer, description="Order #8F3C")
    return {"payment_intent": pi["id"], "customer": customer}


def _refund_request(sb: StripeSandbox, ctx: dict[str, str], key_id: str, secret: str) -> Call:
    body = {"payment_intent": ctx["payment_intent"], "amount": str(REFUND_MINOR), "reason": "requested_by_customer"}
    # Each turn of the loop is a new refund to the agent: a new Idempotency-Key, as an SDK makes one.
    headers = {"Authorization": f"Bearer {secret}", "Idempotency-Key": str(uuid.uuid4())}
    return Call("POST", "/v1/refunds", body, headers)


REFUND_LOOP = Scenario(
    name="refund-loop",
    vendor="stripe",
    story="a support agent re-reads the same complaint and refunds $25.00 on order #8F3C every time",
    call_text=f"POST /v1/refunds payment_intent=pi_… amount={REFUND_MINOR} (USD {REFUND_MINOR / 100:.2f})",
    cap_usd=Decimal(100),
    attempts=20,
    sandbox=lambda: StripeSandbox("sk_test_" + secrets.token_hex(12)),
    seed=_refund_seed,
    credential=lambda sb: {"vendor": "stripe", "name": "sandbox", "secret": sb.secret, "base_url": sb.base_url},
    policy=lambda ctx, cap: {
        "total_usd_cap": str(cap),
        "allowed_endpoints": ["POST /v1/refunds"],
        "customer_allowlist": [ctx["customer"]],
    },
    request=_refund_request,
    moved_usd=lambda sb: Decimal(sb.moved_refunds_minor) / 100,
    real_secret=lambda sb: sb.secret,
    objects=lambda sb: sb.refunds.keys(),
)


# -- sms-loop: a notification agent texting the same customer again and again -----------------

SMS_TO, SMS_FROM = "+14155550100", "+14155550199"
SMS_BODY = "Your order #8F3C has shipped! Track it at https://example.com/t/8f3c"


def _sms_request(sb: TwilioSandbox, ctx: dict[str, str], key_id: str, secret: str) -> Call:
    # Through Keybrake the account in the path is the key's id and the key is the password
    # (the Twilio helper's convention); straight at Twilio, the real Account SID and auth token.
    user = key_id or sb.account_sid
    auth = base64.b64encode(f"{user}:{secret}".encode()).decode()
    path = f"/2010-04-01/Accounts/{user}/Messages.json"
    return Call("POST", path, {"To": SMS_TO, "From": SMS_FROM, "Body": SMS_BODY}, {"Authorization": f"Basic {auth}"})


SMS_LOOP = Scenario(
    name="sms-loop",
    vendor="twilio",
    story=f"a notification agent keeps texting the same 'your order has shipped' SMS to {SMS_TO}",
    call_text=f"POST /2010-04-01/Accounts/…/Messages.json To={SMS_TO} (one SMS segment)",
    cap_usd=Decimal("0.10"),
    attempts=20,
    sandbox=TwilioSandbox,
    seed=lambda sb: {},
    credential=lambda sb: {
        "vendor": "twilio",
        "name": "sandbox",
        "secret": {"account_sid": sb.account_sid, "auth_token": sb.auth_token},
        "base_url": sb.base_url,
    },
    policy=lambda ctx, cap: {
        "total_usd_cap": str(cap),
        "allowed_endpoints": ["POST /2010-04-01/Accounts/*/Messages.json"],
        "allowed_to_prefixes": ["+1"],
    },
    request=_sms_request,
    moved_usd=lambda sb: sb.billed_usd,
    real_secret=lambda sb: sb.auth_token,
    objects=lambda sb: sb.messages.keys(),
    sends=lambda sb: len(sb.messages),
    sends_word="messages",
    settle=lambda sb: sb.deliver(),
    # Reconcile twice a second, so the real prices are read within the demo (default: every 60 s).
    server_env=(("KEYBRAKE_TWILIO_RECONCILE_INTERVAL", "0.5"),),
)


# -- email-loop: a billing agent re-sending the same email to a customer's contacts -------------

EMAIL_FROM = "Acme Billing <billing@acme.test>"
EMAIL_TO, EMAIL_CC = "ap@customer.test", ("cfo@customer.test", "controller@customer.test")
EMAIL_SUBJECT = "Invoice INV-8F3C is ready"


def _email_request(sb: ResendSandbox, ctx: dict[str, str], key_id: str, secret: str) -> Call:
    body = {"from": EMAIL_FROM, "to": [EMAIL_TO], "cc": list(EMAIL_CC), "subject": EMAIL_SUBJECT,
            "text": "Your invoice INV-8F3C for $2,500.00 is ready: https://example.com/i/8f3c"}  # fmt: skip
    headers = {"Authorization": f"Bearer {secret}", "Content-Type": "application/json"}
    return Call("POST", "/emails", json.dumps(body), headers)


EMAIL_LOOP = Scenario(
    name="email-loop",
    vendor="resend",
    story=f"a billing agent keeps re-sending the same '{EMAIL_SUBJECT}' email to the customer's "
    f"{1 + len(EMAIL_CC)} accounts-payable contacts",
    call_text=f"POST /emails to={EMAIL_TO} cc={','.join(EMAIL_CC)} ({1 + len(EMAIL_CC)} recipients)",
    cap_usd=Decimal(1),
    attempts=20,
    sandbox=ResendSandbox,
    seed=lambda sb: {},
    credential=lambda sb: {"vendor": "resend", "name": "sandbox", "secret": sb.api_key, "base_url": sb.base_url},
    policy=lambda ctx, cap: {
        "total_usd_cap": str(cap),
        "allowed_endpoints": ["POST /emails"],
        "allowed_to_domains": [EMAIL_TO.rpartition("@")[2]],
        "allowed_from_domains": [EMAIL_FROM.rpartition("@")[2].rstrip(">")],
    },
    request=_email_request,
    moved_usd=lambda sb: sb.billed_usd,
    real_secret=lambda sb: sb.api_key,
    objects=lambda sb: sb.emails.keys(),
    # Keybrake prices a send at a flat rate per recipient: the sandbox's price per email.
    server_env=(("KEYBRAKE_RESEND_RATE_USD", str(EMAIL_USD)),),
    sends=lambda sb: sb.sent,
    sends_word="emails",
    send_cap=20,
)

SCENARIOS: dict[str, Scenario] = {s.name: s for s in (REFUND_LOOP, SMS_LOOP, EMAIL_LOOP)}
