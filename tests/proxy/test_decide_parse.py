"""One parse and guarded endpoints, by tables (proxy/decide.py; docs/policy.md, one parse and
guarded endpoints). Moved from real-server tests that only checked a refusal (every checked value
kept): test_guarded.py test_guarded_endpoints_need_a_literal_pattern and the requests of
test_every_twilio_and_resend_guarded_pattern_is_refused; test_one_parse.py
test_an_amount_in_two_shapes_is_refused_and_nothing_is_charged, test_twilio_destination_collisions_are_refused,
test_resend_look_alike_keys_are_refused and test_resend_custom_headers_cannot_add_recipients.
A refusal sends nothing and reserves nothing (tests/proxy/test_shell.py proves the shell keeps to it).
"""

from __future__ import annotations

from typing import Any

import pytest

from keybrake.core.request import ProxyRequest
from keybrake.store.base import KeyRecord
from tests.proxy.build import KEY_ID, TWILIO_SID, key, plan_of, refusal_of, request
from tests.test_guarded import GUARDED_REQUESTS, RESEND_GUARDED, TWILIO_GUARDED

pytestmark = pytest.mark.store_free

USD = 1_000_000
FORM = "application/x-www-form-urlencoded"
WIDE_POLICIES: list[dict[str, Any]] = [
    {},
    {"allowed_endpoints": ["* /v1/**"]},
    {"allowed_endpoints": ["* /**"]},
    {"allowed_endpoints": ["POST /v1/*", "GET /v1/*/*", "DELETE /v1/*/*", "* /v1/*/*/*", "GET /v1/apps/secrets/*"]},
]
GUARDED: list[tuple[KeyRecord, ProxyRequest]] = [
    *[
        (key(**policy, max_usd_per_call=USD), request(m, f"/stripe{p}"))
        for policy in WIDE_POLICIES
        for m, p in GUARDED_REQUESTS
    ],
    *[
        (key("twilio", allowed_endpoints=["* /**"], max_usd_per_call=USD), request(m, "/twilio" + p.format(sid=KEY_ID)))
        for m, p in TWILIO_GUARDED
    ],
    *[
        (key("resend", allowed_endpoints=["* /**"], max_usd_per_call=USD), request(m, f"/resend{p}"))
        for m, p in RESEND_GUARDED
    ],
]


@pytest.mark.parametrize(
    ("k", "req"), GUARDED, ids=[f"{k.vendor} {r.method} {r.raw_path.decode()} {k.policy}" for k, r in GUARDED]
)
def test_guarded_endpoints_need_a_literal_pattern(k: KeyRecord, req: ProxyRequest) -> None:
    denial = refusal_of(k, req)
    assert (denial.code, denial.status) == ("endpoint_guarded", 403), denial.message


def stripe_charge(body: bytes, query: str = "") -> ProxyRequest:
    return request("POST", "/stripe/v1/charges" + (f"?{query}" if query else ""), body=body, ctype=FORM)


STRIPE_KEY = key(daily_usd_cap=10 * USD, max_usd_per_call=5 * USD, allowed_endpoints=["POST /v1/charges"])
AMOUNT_SHAPES = [
    (b"amount[]=100&amount=99999&currency=usd&source=tok_visa", ""),  # the example
    (b"amount=99999&amount[]=100&currency=usd&source=tok_visa", ""),  # order reversed
    (b"amount[]=100&currency=usd&source=tok_visa", "amount=99999"),  # split over query and body
    (b"amount=99999&currency=usd&source=tok_visa", "amount[]=100"),
    (b"amount[0]=100&amount=99999&currency=usd&source=tok_visa", ""),  # an index
    (b"amount=100&currency=usd&source=tok_visa&amount[x]=99999", ""),  # a value and a parent
    (b"amount=100&currency=usd&source=tok_visa& amount=99999", ""),  # Rack eats spaces after '&'
]


@pytest.mark.parametrize(("body", "query"), AMOUNT_SHAPES)
def test_an_amount_in_two_shapes_is_refused(body: bytes, query: str) -> None:
    denial = refusal_of(STRIPE_KEY, stripe_charge(body, query))
    assert (denial.code, denial.status, denial.verdict) == ("param_ambiguous", 400, "denied_param_ambiguous")
    assert "amount" in denial.message


TWILIO_KEY = key("twilio", allowed_to_prefixes=["+1"], daily_usd_cap=USD)
# (body, query, code): a second destination in another shape (body_invalid: Twilio takes no
# brackets) or spelling (param_ambiguous)
TWILIO_COLLISIONS = [
    (b"To[]=%2B88200000001&To=%2B14155550100&From=%2B14155550199&Body=hi", "", "body_invalid"),
    (b"To=%2B14155550100&To[]=%2B88200000001&From=%2B14155550199&Body=hi", "", "body_invalid"),
    (b"to=%2B88200000001&To=%2B14155550100&From=%2B14155550199&Body=hi", "", "param_ambiguous"),
    (b"To=%2B14155550100&+To=%2B88200000001&From=%2B14155550199&Body=hi", "", "param_ambiguous"),
    (b"To[0]=%2B88200000001&From=%2B14155550199&Body=hi", "To=%2B14155550100", "body_invalid"),
    (b"To=%2B88200000001&From=%2B14155550199&Body=hi", "To=%2B14155550100", "param_ambiguous"),
]


@pytest.mark.parametrize(("body", "query", "code"), TWILIO_COLLISIONS)
def test_twilio_destination_collisions_are_refused(body: bytes, query: str, code: str) -> None:
    path = f"/twilio/2010-04-01/Accounts/{KEY_ID}/Messages.json" + (f"?{query}" if query else "")
    denial = refusal_of(TWILIO_KEY, request("POST", path, body=body, ctype=FORM))
    assert (denial.code, denial.status, denial.verdict) == (code, 400, f"denied_{code}")


RESEND_KEY = key("resend", allowed_to_domains=["example.com"], daily_usd_cap=USD)
LOOK_ALIKES = [
    b'{"from": "bot@acme.io", "to": "a@example.com", "bcc ": "spy@evil.io", "subject": "x", "html": "y"}',
    b'{"from": "bot@acme.io", "to": "a@example.com", "To": "spy@evil.io", "subject": "x", "html": "y"}',
    b'{"from": "bot@acme.io", "To": "spy@evil.io", "subject": "x", "html": "y"}',
    b'[{"from": "bot@acme.io", "to": "a@example.com", "subject": "x", "html": "y", "\\u200bbcc": "s@evil.io"}]',
]


@pytest.mark.parametrize("body", LOOK_ALIKES)
def test_resend_look_alike_keys_are_refused(body: bytes) -> None:
    path = "/resend/emails/batch" if body.startswith(b"[") else "/resend/emails"
    denial = refusal_of(RESEND_KEY, request("POST", path, body=body, ctype="application/json"))
    assert (denial.code, denial.status, denial.verdict) == ("body_invalid", 400, "denied_body_invalid")


EMAIL = {"from": "bot@acme.io", "to": "a@example.com", "subject": "x", "html": "y"}
CUSTOM_HEADERS: list[tuple[object, int]] = [
    ({"Bcc": "spy@evil.io"}, 403),
    ({" bcc ": "spy@evil.io"}, 400),  # refused already as a JSON key with blanks
    ({"Resent-To": "spy@evil.io"}, 403),
    ({"From": "ceo@bank.example"}, 403),
    ({"X-Note": "ok\r\nBcc: spy@evil.io"}, 400),
    ({"X-Count": 5}, 400),
    ("Bcc: spy@evil.io", 400),
]


@pytest.mark.parametrize(("headers", "status"), CUSTOM_HEADERS)
@pytest.mark.parametrize("batch", [False, True])
def test_resend_custom_headers_cannot_add_recipients(headers: object, status: int, batch: bool) -> None:
    """Resend's `headers` adds custom headers to the email: an address header there would send to
    (or as) someone `to`/`cc`/`bcc`/`from` scope never saw, and uncounted."""
    email = {**EMAIL, "headers": headers}
    req = (
        request("POST", "/resend/emails/batch", json_body=[email])
        if batch
        else request("POST", "/resend/emails", json_body=email)
    )
    assert refusal_of(RESEND_KEY, req).status == status


def test_resend_custom_headers_without_addresses_are_sent() -> None:
    _, sent = plan_of(
        RESEND_KEY, request("POST", "/resend/emails", json_body={**EMAIL, "headers": {"X-Entity-Ref-ID": "123"}})
    )
    assert b"X-Entity-Ref-ID" in sent.body


# -- Twilio spellings (moved from test_proxy_twilio_spellings.py: test_operations_outside_the_2010_spec_are_refused,
# test_undocumented_spellings_of_a_send_are_refused, test_account_fetch_is_guarded_in_every_spelling)
UK_SMS = {"To": "+447700900123", "From": "+14155550199", "Body": "hi"}
SPEC_KEY = key("twilio", allowed_to_prefixes=["+1415"], daily_usd_cap=5 * USD, max_usd_per_call=USD, daily_send_cap=1)
SEND_KEY = key("twilio", allowed_to_prefixes=["+1"], daily_usd_cap=5 * USD, max_usd_per_call=USD)
PLAIN_KEY = key("twilio", daily_usd_cap=5 * USD)
NAMED_KEY = key("twilio", daily_usd_cap=5 * USD, allowed_endpoints=[f"GET /2010-04-01/Accounts/{TWILIO_SID}.json"])
# (why, key, method, path after /twilio, code, words the message must carry)
SPELLINGS: list[tuple[str, KeyRecord, str, str, str, str]] = [
    # Found by the red-team run: each of these was forwarded unpriced and unscoped.
    *[
        ("outside the 2010 spec", SPEC_KEY, m, p.format(vk=KEY_ID, sid=TWILIO_SID), "path_invalid", "")
        for m, p in [
            ("PUT", "/2010-04-01/Accounts/{vk}/Messages.json"),  # Twilio takes PUT for POST; the spec lists none
            ("PUT", "/2010-04-01/Accounts/{vk}/Calls.json"),
            ("PUT", "/2010-04-01/Accounts/{vk}/IncomingPhoneNumbers.json"),
            ("POST", "/2010-04-01/Accounts/{vk}/SMS/Messages.json"),  # deprecated resource, still a send
            ("POST", "/2010-04-01/Accounts/{vk}/SMS/Messages"),
            ("POST", "/2008-08-01/Accounts/{sid}/SMS/Messages"),  # the older API version on the same host
            ("POST", "/2008-08-01/Accounts/{sid}/Calls"),
            ("GET", "/2008-08-01/Accounts/{sid}"),  # its answer carries <AuthToken>
        ]
    ],
    *[
        (
            "an undocumented spelling of a send",
            SEND_KEY,
            "POST",
            f"/2010-04-01/Accounts/{KEY_ID}/{s}",
            "path_invalid",
            "",
        )
        for s in ("messages.json", "MESSAGES.xml", "Messages.JSON", "Messages.csv", "Messages.json.xml", "Calls.txt")
    ],
    (
        "a case variant says so",
        SEND_KEY,
        "POST",
        f"/2010-04-01/Accounts/{KEY_ID}/messages.json",
        "path_invalid",
        "differs only in letter case",
    ),
    *[
        (
            "the account fetch in any spelling",
            PLAIN_KEY,
            "GET",
            f"/2010-04-01/Accounts/{a}{ext}",
            "endpoint_guarded",
            "",
        )
        for a in (KEY_ID, TWILIO_SID)
        for ext in (".xml", "", ".csv", ".html")
    ],
    ("the keys list", PLAIN_KEY, "GET", f"/2010-04-01/Accounts/{KEY_ID}/Keys", "endpoint_guarded", ""),
    # An XML account would carry <AuthToken>: even a key naming the JSON fetch cannot read it.
    (
        "the XML account fetch",
        NAMED_KEY,
        "GET",
        f"/2010-04-01/Accounts/{TWILIO_SID}.xml",
        "path_invalid",
        "JSON answers only",
    ),
]


@pytest.mark.parametrize(
    ("why", "k", "method", "path", "code", "words"), SPELLINGS, ids=[f"{s[0]}: {s[2]} {s[3]}" for s in SPELLINGS]
)
def test_twilio_spellings(why: str, k: KeyRecord, method: str, path: str, code: str, words: str) -> None:
    body = UK_SMS if method in ("POST", "PUT") else None
    denial = refusal_of(k, request(method, "/twilio" + path, form=body))
    assert denial.code == code and words in denial.message, denial.message
