"""One parse, generated (see tests/vendors/one_parse_gen.py), Postmark: JSON bodies for the four
send endpoints built from every member the definition reads (`From`, `To`, `Cc`, `Bcc`) and some it
does not, with letter-case, width and whitespace variants, repeats, and address lists with
display names and quoted commas, and custom `Headers`. Keybrake's parse either refuses with a
4xx, or enforces exactly what Postmark's .NET reader acts on — keys matched in any letter case
(`to` is `To`), recipients split as an email header is (Python's `email.utils.getaddresses` as the
reference) — and lets no custom header naming recipients or a sender through.

Examples per run: 1,500.
"""

from __future__ import annotations

import json
from decimal import Decimal
from email.utils import getaddresses
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from keybrake.core.destinations import domain_allowed
from keybrake.core.errors import Denial
from keybrake.core.policy import Policy
from keybrake.vendors import build_vendors
from tests.vendors.contract import Call
from tests.vendors.one_parse_gen import REPEAT, add_entry, join_entries, props, spellings

RATE_MICRO = 1_800  # $0.0018, the default KEYBRAKE_POSTMARK_USD_PER_EMAIL
RATES = {"usd": Decimal(1)}
TO_OK, FROM_OK = ("example.com", "*.example.org"), ("acme.io",)
SCOPE = Policy(vendor_data={"allowed_to_domains": list(TO_OK), "allowed_from_domains": list(FROM_OK)})
READ = ("From", "To", "Cc", "Bcc")

ADDRESSES = [
    '"a@example.com"',
    '"Ana <ana@example.com>"',
    '"a@example.com, b@sub.example.org"',
    '"\\"Evil, Inc\\" <spy@evil.io>"',
    '"\\"Ana, Sales\\" <ana@example.com>, bo@example.com"',
    '"spy@evil.io"',
    '"ok@example.com, spy@evil.io"',
    '""',
]
VALUES: dict[str, list[str]] = {
    "From": ['"bot@acme.io"', '"Acme <bot@acme.io>"', '"m@evil.io"'],
    "To": ADDRESSES,
    "Cc": ADDRESSES,
    "Bcc": ADDRESSES,
    "Subject": ['"s"'],
    "TextBody": ['"t"'],
    "Headers": [
        '[{"Name": "X-Tag", "Value": "1"}]',
        '[{"Name": "Bcc", "Value": "spy@evil.io"}]',
        '[{"name": " resent-TO ", "value": "spy@evil.io"}]',
        '[{"Name": "X-Tag", "Value": "1"}, {"NAME": "cc", "Value": "spy@evil.io"}]',
        "null",
    ],
}
MEMBERS = [
    (f, json.dumps(key), v)
    for f, vs in VALUES.items()
    for key in [f] * 12 + [f.lower(), f.upper()] * 3 + spellings(f)
    for v in vs
]
_VARIANTS = st.lists(st.one_of([st.sampled_from([m for m in MEMBERS if m[0] == f]) for f in VALUES]), max_size=4)
BASE = [("From", '"bot@acme.io"'), ("To", '"a@example.com"'), ("Subject", '"s"'), ("TextBody", '"t"')]


@st.composite
def message(draw: st.DrawFn) -> str:
    members = [(json.dumps(k), "body", f'"{k}": {v}') for k, v in BASE if draw(REPEAT)]
    for _, key, value in draw(_VARIANTS):
        add_entry(draw, members, key, "body", f"{key}: {value}")
    return "{" + join_entries(draw(st.permutations(members)), "body", ", ") + "}"


SENDS = ["/email", "/email/withTemplate", "/email/batch", "/email/batchWithTemplates"]


@st.composite
def request(draw: st.DrawFn) -> tuple[str, bytes]:
    """A send; most often its body has the endpoint's shape, sometimes another send's."""
    path = draw(st.sampled_from(SENDS))
    shape = path if draw(st.integers(0, 4)) else draw(st.sampled_from(SENDS))
    if shape in ("/email", "/email/withTemplate"):
        return path, draw(message()).encode()
    items = "[" + ", ".join(draw(st.lists(message(), min_size=1, max_size=3))) + "]"
    return path, (items if shape == "/email/batch" else '{"Messages": ' + items + "}").encode()


def messages(doc: Any) -> list[dict[str, Any]]:
    """Every message a send body may hold, whatever its endpoint (Keybrake fails closed: an object,
    each element of an array, each of `Messages`), with members by lower-cased key as .NET reads
    them (the last wins)."""
    found: list[Any] = doc if isinstance(doc, list) else [doc]
    if isinstance(doc, dict):
        inner = {k.lower(): v for k, v in doc.items()}.get("messages")
        found += inner if isinstance(inner, list) else []
    return [{k.lower(): v for k, v in m.items()} for m in found if isinstance(m, dict)]


def reference(doc: Any) -> tuple[int, bool]:
    """(addresses Postmark sends to, whether every To/Cc/Bcc/From domain is allowed)."""
    count, allowed = 0, True
    for m in messages(doc):
        for field in ("to", "cc", "bcc"):
            for _, address in getaddresses([m[field]] if isinstance(m.get(field), str) and m[field] else []):
                count += 1
                allowed &= domain_allowed(address.rpartition("@")[2].lower(), TO_OK)
        for _, address in getaddresses([m["from"]] if isinstance(m.get("from"), str) else []):
            allowed &= domain_allowed(address.rpartition("@")[2].lower(), FROM_OK)
    return count, allowed


ADDRESS_HEADERS = {"to", "cc", "bcc", "from", "sender", "return-path", "delivered-to", "x-original-to"}


def address_headers(doc: Any) -> list[str]:
    """Custom header names (`Headers[].Name`, any key case) that name recipients or a sender."""
    found = []
    for m in messages(doc):
        for h in m.get("headers") or []:
            name = {k.lower(): v for k, v in h.items()}.get("name", "") if isinstance(h, dict) else ""
            if isinstance(name, str) and (
                name.strip().lower() in ADDRESS_HEADERS or name.strip().lower().startswith("resent-")
            ):
                found.append(name)
    return found


def folded_twins(path: str, body: bytes) -> bool:
    """Whether an object that holds a read field has two keys differing only by case."""
    twins = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal twins
        keys = [k.lower() for k, _ in pairs]
        twins |= any(keys.count(f.lower()) > 1 for f in (*READ, "Messages"))
        return dict(pairs)

    json.loads(body, object_pairs_hook=hook)
    return twins


@props(1500)
@given(request())
def test_postmark_enforces_what_dotnet_reads_or_refuses(req: tuple[str, bytes]) -> None:
    path, body = req
    vendor = build_vendors()["postmark"]
    call = Call("POST", path, body, "application/json")
    try:
        vreq = vendor.parse(call.request(), vendor.canonical("POST", call.segments))
        vendor.precheck(SCOPE, vreq)
        vreq = vreq.scoped(vendor.check_scope(SCOPE, vreq))
        amount = vendor.estimate(vreq, RATES).amount
    except Denial as d:
        assert 400 <= d.status < 500, d
        event(f"refused {d.code}")
        return
    event("accepted")
    assert not folded_twins(path, body), body  # `To` and `to` in one message: refused, not guessed
    assert not address_headers(json.loads(body)), body  # refused on every key
    count, allowed = reference(json.loads(body))
    assert allowed, body  # every address Postmark would send to or from is inside the scope
    assert amount == count * RATE_MICRO, (amount, count, body)
