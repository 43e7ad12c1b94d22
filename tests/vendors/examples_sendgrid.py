"""SendGrid's contract examples (tests/vendors/contract.py): the built-in defined by
src/keybrake/vendors/definitions/sendgrid.toml, at the default $0.0004 per email."""

from __future__ import annotations

from typing import Any

from keybrake.core.policy import Policy
from tests.vendors.contract import Call, PolicyFieldExample, VendorExamples, js


def mail(*to: str, sender: str = "bot@acme.io", **p13n: Any) -> dict[str, Any]:
    """A Mail Send body with one personalization to `to` (plus `cc`/`bcc` lists of addresses)."""
    personalization: dict[str, Any] = {"to": [{"email": a} for a in to]}
    for field, addresses in p13n.items():
        personalization[field] = [{"email": a} for a in addresses]
    return {
        "personalizations": [personalization],
        "from": {"email": sender},
        "subject": "s",
        "content": [{"type": "text/plain", "value": "t"}],
    }


SEND = "/v3/mail/send"

SENDGRID = VendorExamples(
    secret="SG.FakeSendGridKey0123456.abcdefghijklmnopqrstuvwxyz0123456789ABCDEFG",
    bad_secret="re_notASendGridKey_12345678",  # SendGrid keys start with "SG."
    spellings=((js("POST", SEND, mail("b@example.com")), ("v3", "mail", "send")),),
    case_variant=js("POST", "/v3/mail/Send", mail("b@example.com")),
    never_matches=None,
    matches="POST /v3/mail/send",
    guarded=(
        Call("POST", "/v3/api_keys"),
        Call("PATCH", "/v3/user/webhooks/event/settings"),
        Call("POST", "/v3/subusers"),
        Call("POST", "/v3/teammates"),
        Call("POST", "/v3/whitelabel/domains"),
        Call("POST", "/v3/verified_senders"),
        js("PUT", "/v3/marketing/singlesends/abc/schedule", {"send_at": "now"}),
        Call("POST", "/v3/campaigns/1/schedules/now"),
    ),
    free=Call("GET", "/v3/scopes"),
    priced=js(
        "POST",
        SEND,
        {
            **mail("b@example.com", "c@example.com", cc=["d@example.com"]),
            "personalizations": [
                {"to": [{"email": "b@example.com"}, {"email": "c@example.com"}], "cc": [{"email": "d@example.com"}]},
                {"to": [{"email": "e@example.com"}], "bcc": [{"email": "f@example.com"}]},
            ],
        },
    ),
    priced_usd=2_000,  # 5 addresses × $0.0004
    unpriceable=js("POST", "/v3/validations/email", {"email": "b@example.com"}),  # a paid add-on, not priced
    scope=Policy(vendor_data={"allowed_to_domains": ["example.com"]}),
    in_scope=js("POST", SEND, mail("b@example.com")),
    out_of_scope=js("POST", SEND, mail("b@example.com", bcc=["spy@evil.io"])),
    secret_answer=(
        Call("POST", "/v3/api_keys"),
        {"api_key": "SG.n3w.s3cretpart", "api_key_id": "n3w", "name": "agent", "scopes": ["mail.send"]},
        ("SG.n3w.s3cretpart",),
    ),
    error_code_at=("id",),
    error_message_at=("errors", 0, "message"),
    policy_fields=(
        PolicyFieldExample(
            "allowed_to_domains",
            ["example.com"],
            ["not a domain"],
            "is not a domain name",
            js("POST", SEND, mail("b@example.com", cc=["x@evil.io"])),
        ),
        PolicyFieldExample(
            "allowed_from_domains",
            ["acme.io"],
            ["*"],
            "is not a domain name",
            js(
                "POST",
                SEND,
                {
                    **mail("b@example.com"),
                    "personalizations": [{"to": [{"email": "b@example.com"}], "from": {"email": "m@evil.io"}}],
                },
            ),
        ),
    ),
)
