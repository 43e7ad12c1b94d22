"""What the vendor contract tests need of a vendor: example requests, declared once per vendor.

Every registered vendor declares a `VendorExamples` (the built-in ones below, a test vendor in
its own module); tests/vendors/test_vendor_contract.py runs the same checks over each: endpoint
matching, pricing classes, scope, redaction and error shape (docs/vendors.md, adding a vendor).
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest

FORM = "application/x-www-form-urlencoded"
JSON = "application/json"


@dataclass(frozen=True)
class Call:
    """One request as an agent sends it, after the `/{vendor}` prefix."""

    method: str
    path: str  # percent-encoded, without the query
    body: bytes = b""
    content_type: str | None = None
    query: bytes = b""
    headers: tuple[tuple[str, str], ...] = ()

    def request(self) -> ProxyRequest:
        headers = (*self.headers, *((("content-type", self.content_type),) if self.content_type else ()))
        return ProxyRequest(self.method, self.path.encode(), self.query, headers, self.body, "127.0.0.1")

    @property
    def segments(self) -> tuple[str, ...]:
        return tuple(s for s in self.path.split("/") if s)


def form(method: str, path: str, body: str) -> Call:
    return Call(method, path, body.encode(), FORM)


def js(method: str, path: str, doc: Any) -> Call:
    return Call(method, path, json.dumps(doc).encode(), JSON)


@dataclass(frozen=True)
class PolicyFieldExample:
    """One of the vendor's own policy fields (`VendorSpec.policy_input`), as the contract tests use it.

    - `valid` is accepted by the composed admin input; `invalid` is refused with a message
      containing `message` (the vendor's own validator's or pydantic's), naming the field.
    - `call` is decided by the field: with `also` (other fields the value needs) and the field set
      to `valid`, it is refused with `code`; with `also` alone it is allowed — or the other way
      round when the field `widens` what `also` allows. None: the field decides no refusal.
    """

    field: str
    valid: Any
    invalid: Any
    message: str
    call: Call | None
    code: str = "scope_violation"
    also: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    widens: bool = False


@dataclass(frozen=True)
class VendorExamples:
    """The example requests and answers the contract tests run for one vendor.

    - `secret` is a credential secret the vendor accepts, `bad_secret` one it refuses.
    - `spellings`: calls with the canonical path the vendor classifies them by;
      `case_variant`: a money-moving endpoint in other letter case (refused, `path_invalid`).
    - `never_matches`: an `allowed_endpoints` pattern `pattern_problem` explains (None: the
      vendor accepts every pattern); `matches`: one it accepts.
    - `guarded`: calls that must match one of `Vendor.guarded`.
    - `free`, `unpriceable`: calls estimated as such (`free` None: the vendor has no free call);
      `priced`: a call estimated at `priced_usd`
      micro-USD (an upper bound), under `Policy()`.
    - `scope`: a policy scoping the key; `in_scope` passes it, `out_of_scope` is refused
      (`scope_violation`, by precheck or check_scope).
    - `secret_answer`: a call and its answer, with the secret values `redact` must remove.
    - `error_code_at`, `error_message_at`: where `render_denial`'s body carries the Keybrake
      code and message (the vendor's documented error shape).
    - `policy_fields`: one example per policy field the vendor declares (`PolicyFieldExample`).
    """

    secret: Any
    bad_secret: Any
    spellings: tuple[tuple[Call, tuple[str, ...]], ...]
    case_variant: Call
    never_matches: str | None
    matches: str
    guarded: tuple[Call, ...]
    free: Call | None
    priced: Call
    priced_usd: int
    unpriceable: Call
    scope: Policy
    in_scope: Call
    out_of_scope: Call
    secret_answer: tuple[Call, dict[str, Any], tuple[str, ...]]
    error_code_at: tuple[str | int, ...]  # keys, or list indexes
    error_message_at: tuple[str | int, ...]
    policy_fields: tuple[PolicyFieldExample, ...] = ()


AC = "AC" + "0" * 32
MESSAGE = "To=%2B14155550100&From=%2B14155550199&Body=hi"
EMAIL = {"from": "a@acme.io", "to": "b@example.com", "subject": "s", "text": "t"}
CA = "CA" + "1" * 32
TW = f"/2010-04-01/Accounts/{AC}"
AP = "AP" + "2" * 32
OK_TWIML = "https%3A%2F%2Fok.example%2Ftwiml"

STRIPE = VendorExamples(
    secret="sk_test_abcdefgh12345678",
    bad_secret="pk_test_abcdefgh12345678",
    spellings=((form("POST", "/v1/charges", "amount=100&currency=usd"), ("v1", "charges")),),
    case_variant=form("POST", "/v1/Charges", "amount=100&currency=usd"),
    never_matches=None,
    matches="POST /v1/charges",
    guarded=(Call("POST", "/v1/webhook_endpoints"), Call("GET", "/v1/accounts/acct_1/login_links")),
    free=Call("GET", "/v1/charges"),
    priced=form("POST", "/v1/charges", "amount=2000&currency=usd&customer=cus_ok"),
    priced_usd=20_000_000,
    unpriceable=form("POST", "/v1/payment_intents/pi_1/confirm", ""),
    scope=Policy(customer_allowlist=frozenset({"cus_ok"})),
    in_scope=form("POST", "/v1/charges", "amount=2000&currency=usd&customer=cus_ok"),
    out_of_scope=form("POST", "/v1/charges", "amount=2000&currency=usd&customer=cus_evil"),
    secret_answer=(
        Call("GET", "/v1/webhook_endpoints/we_1"),
        {"id": "we_1", "object": "webhook_endpoint", "secret": "whsec_s3cret"},
        ("whsec_s3cret",),
    ),
    error_code_at=("error", "code"),
    error_message_at=("error", "message"),
    policy_fields=(
        PolicyFieldExample(
            "account_allowlist",
            ["acct_1"],
            [""],
            "at least 1 character",
            Call("GET", "/v1/charges", headers=(("stripe-account", "acct_9"),)),
        ),
    ),
)

TWILIO = VendorExamples(
    secret={"account_sid": AC, "auth_token": "f" * 32},
    bad_secret={"account_sid": AC},
    spellings=(
        (
            form("POST", f"{TW}/Messages", MESSAGE),
            ("2010-04-01", "Accounts", AC, "Messages.json"),
        ),
        (Call("GET", f"{TW}/Messages.xml"), ("2010-04-01", "Accounts", AC, "Messages.json")),
    ),
    case_variant=form("POST", f"{TW}/messages.json", MESSAGE),
    never_matches="POST /2010-04-01/Accounts/*/Messages.xml",
    matches="POST /2010-04-01/Accounts/*/Messages.json",
    guarded=(Call("GET", "/2010-04-01/Accounts.json"), Call("POST", f"{TW}/IncomingPhoneNumbers.json")),
    free=Call("GET", f"{TW}/Messages.json"),
    priced=form("POST", f"{TW}/Messages.json", MESSAGE),
    priced_usd=11_300,
    unpriceable=form("POST", f"{TW}/Calls/{CA}.json", "Status=completed"),
    scope=Policy(vendor_data={"allowed_to_prefixes": ["+1"]}),
    in_scope=form("POST", f"{TW}/Messages.json", MESSAGE),
    out_of_scope=form("POST", f"{TW}/Messages.json", "To=%2B442079460958&From=%2B14155550199&Body=hi"),
    secret_answer=(
        Call("GET", f"{TW}.json"),
        {"sid": AC, "auth_token": "a1b2c3d4e5", "subresource_uris": {}},
        ("a1b2c3d4e5",),
    ),
    error_code_at=("details", "keybrake_code"),
    error_message_at=("message",),
    policy_fields=(
        PolicyFieldExample(
            "allowed_to_prefixes",
            ["+1"],
            ["44"],
            "is neither an E.164 prefix",
            form("POST", f"{TW}/Messages.json", "To=%2B442079460958&From=%2B14155550199&Body=hi"),
        ),
        PolicyFieldExample(
            "default_calling_code",
            "+44",
            "+999",
            "is not a country calling code",
            form("POST", f"{TW}/Messages.json", "To=2079460958&From=%2B14155550199&Body=hi"),
            also={"allowed_to_prefixes": ["+44"]},
            widens=True,
        ),
        PolicyFieldExample(
            "max_call_seconds",
            60,
            0,
            "greater than or equal to 1",
            form("POST", f"{TW}/Calls/{CA}.json", "TimeLimit=120"),
            code="param_not_allowed",
        ),
        PolicyFieldExample(
            "allowed_twiml_urls",
            ["https://ok.example/twiml"],
            ["http://ok.example/twiml"],
            "http://ok.example/twiml",
            form("POST", f"{TW}/Calls.json", f"To=%2B14155550100&From=%2B14155550199&Url={OK_TWIML}"),
            also={"allowed_to_prefixes": ["+1"]},
            widens=True,
        ),
        PolicyFieldExample(
            "allowed_application_sids",
            [AP],
            ["AP1"],
            "is not a Twilio application SID",
            form("POST", f"{TW}/Calls.json", f"To=%2B14155550100&From=%2B14155550199&ApplicationSid={AP}"),
            also={"allowed_to_prefixes": ["+1"]},
            widens=True,
        ),
    ),
)

RESEND = VendorExamples(
    secret="re_abcdefgh_12345678",
    bad_secret="sk_test_abcdefgh12345678",
    spellings=((js("POST", "/emails", EMAIL), ("emails",)),),
    case_variant=js("POST", "/Emails", EMAIL),
    never_matches=None,
    matches="POST /emails",
    guarded=(Call("GET", "/api-keys"), Call("POST", "/domains")),
    free=Call("GET", "/emails/e_1"),
    priced=js("POST", "/emails", {**EMAIL, "to": ["b@example.com", "c@example.com"]}),
    priced_usd=800,
    unpriceable=Call("DELETE", "/broadcasts/b_1"),
    scope=Policy(vendor_data={"allowed_to_domains": ["example.com"]}),
    in_scope=js("POST", "/emails", EMAIL),
    out_of_scope=js("POST", "/emails", {**EMAIL, "to": "b@evil.io"}),
    secret_answer=(Call("GET", "/api-keys"), {"id": "k_1", "token": "re_t0ken"}, ("re_t0ken",)),
    error_code_at=("name",),
    error_message_at=("message",),
    policy_fields=(
        PolicyFieldExample(
            "allowed_to_domains",
            ["example.com"],
            ["not a domain"],
            "is not a",
            js("POST", "/emails", {**EMAIL, "to": "b@evil.io"}),
        ),
        PolicyFieldExample(
            "allowed_from_domains",
            ["acme.io"],
            ["*"],
            "is not a",
            js("POST", "/emails", {**EMAIL, "from": "a@evil.io"}),
        ),
    ),
)

# Vendors built in as definitions (src/keybrake/vendors/definitions/*.toml) keep their examples in
# their own module, which imports the classes above.
from tests.vendors.examples_postmark import POSTMARK  # noqa: E402
from tests.vendors.examples_segment import SEGMENT  # noqa: E402
from tests.vendors.examples_sendgrid import SENDGRID  # noqa: E402
from tests.vendors.examples_shopify import SHOPIFY  # noqa: E402  (it imports this module's Call)

BUILTIN_EXAMPLES = {
    "stripe": STRIPE,
    "twilio": TWILIO,
    "resend": RESEND,
    "shopify": SHOPIFY,
    "postmark": POSTMARK,
    "sendgrid": SENDGRID,
    "segment": SEGMENT,
}
