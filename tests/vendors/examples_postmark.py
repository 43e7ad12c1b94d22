"""Postmark's contract examples (tests/vendors/contract.py): the built-in defined by
src/keybrake/vendors/definitions/postmark.toml, at the default $0.0018 per email."""

from __future__ import annotations

from keybrake.core.policy import Policy
from tests.vendors.contract import Call, PolicyFieldExample, VendorExamples, js

EMAIL = {"From": "Acme <bot@acme.io>", "To": "b@example.com", "Subject": "s", "TextBody": "t"}
TEMPLATED = {"From": "bot@acme.io", "To": "b@example.com", "TemplateAlias": "welcome", "TemplateModel": {}}

POSTMARK = VendorExamples(
    secret="3f1c2b9e-7d4a-4c1e-9b8a-0f2d5e6a7b8c",
    bad_secret={"token": "3f1c2b9e-7d4a-4c1e-9b8a-0f2d5e6a7b8c"},  # a server token is one string
    spellings=(
        (js("POST", "/email", EMAIL), ("email",)),
        (js("POST", "/email/withTemplate/", TEMPLATED), ("email", "withTemplate")),  # postmarker's spelling
    ),
    case_variant=js("POST", "/Email", EMAIL),  # Postmark's routing ignores case; Keybrake refuses it
    never_matches=None,
    matches="POST /email/batch",
    guarded=(Call("GET", "/server"), Call("POST", "/webhooks"), Call("GET", "/servers/1"), Call("POST", "/domains")),
    free=Call("GET", "/messages/outbound/0a129aee-e1cd-480d-b08d-4f48548ff48d/details"),
    priced=js("POST", "/email", {**EMAIL, "To": "b@example.com, Cy <c@example.com>", "Bcc": "d@example.com"}),
    priced_usd=5_400,  # 3 addresses × $0.0018
    unpriceable=Call("PUT", "/bounces/692560173/activate"),
    scope=Policy(vendor_data={"allowed_to_domains": ["example.com"]}),
    in_scope=js("POST", "/email", EMAIL),
    out_of_scope=js("POST", "/email", {**EMAIL, "Cc": "ok@example.com, spy@evil.io"}),
    secret_answer=(
        Call("GET", "/server"),
        {"ID": 1, "Name": "Production", "ApiTokens": ["0f2d5e6a-tok3n"], "Color": "purple"},
        ("0f2d5e6a-tok3n",),
    ),
    error_code_at=("KeybrakeCode",),
    error_message_at=("Message",),
    policy_fields=(
        PolicyFieldExample(
            "allowed_to_domains",
            ["example.com"],
            ["not a domain"],
            "is not a domain name",
            js("POST", "/email/batch", [EMAIL, {**EMAIL, "To": "b@evil.io"}]),
        ),
        PolicyFieldExample(
            "allowed_from_domains",
            ["acme.io"],
            ["*"],
            "is not a domain name",
            js("POST", "/email", {**EMAIL, "From": "Mallory <m@evil.io>"}),
        ),
    ),
)
