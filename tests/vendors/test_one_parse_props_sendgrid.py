"""One parse, generated (see tests/vendors/one_parse_gen.py), SendGrid: Mail Send bodies built
from every member the definition reads (`personalizations`, `to`, `cc`, `bcc`, `email`, `from`)
with letter-case, width and whitespace variants and repeats, at the top level and inside
personalizations and address objects. Keybrake's parse either refuses with a 4xx, or enforces
what a reader that matches keys in any letter case and keeps the last of a repeated key acts on
(Go's encoding/json; with exact keys the same bodies read the same or are refused).

Examples per run: 1,500.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from keybrake.core.destinations import domain_allowed
from keybrake.core.errors import Denial
from keybrake.core.policy import Policy
from keybrake.vendors import build_vendors
from tests.vendors.contract import Call
from tests.vendors.one_parse_gen import add_entry, join_entries, props, spellings

RATE_MICRO = 400  # $0.0004, the default KEYBRAKE_SENDGRID_USD_PER_EMAIL
RATES = {"usd": Decimal(1)}
TO_OK, FROM_OK = ("example.com",), ("acme.io",)
SCOPE = Policy(vendor_data={"allowed_to_domains": list(TO_OK), "allowed_from_domains": list(FROM_OK)})
READ = ("personalizations", "to", "cc", "bcc", "email", "from")


def _key(name: str) -> st.SearchStrategy[str]:
    """`name`, or now and then a variant spelling (a body has a dozen keys or more)."""
    return st.sampled_from([name] * 600 + [name.capitalize(), name.upper()] * 2 + spellings(name))


@st.composite
def obj(draw: st.DrawFn, members: list[tuple[str, st.SearchStrategy[str]]]) -> str:
    """A JSON object of `members` (name, value strategy): each kept or dropped, maybe under a
    variant spelling, maybe repeated, in any order."""
    entries: list[tuple[str, str, str]] = []
    for name, values in members:
        for _ in range(draw(st.sampled_from([1] * 40 + [0, 2]))):
            key = json.dumps(draw(_key(name)))
            add_entry(draw, entries, key, "body", f"{key}: {draw(values)}")
    return "{" + join_entries(draw(st.permutations(entries)), "body", ", ") + "}"


_EMAIL = st.sampled_from(['"a@example.com"'] * 12 + ['"b@example.com"'] * 6 + ['"spy@evil.io"', '"bot@acme.io"'])
_ADDRESS = obj([("email", _EMAIL), ("name", st.just('"N"'))])
_SENDER = obj([("email", st.sampled_from(['"bot@acme.io"'] * 8 + ['"m@evil.io"']))])
_LIST = st.lists(_ADDRESS, min_size=0, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
_P13N = obj([("to", _LIST), ("cc", _LIST), ("bcc", _LIST), ("from", _SENDER), ("subject", st.just('"s"'))])
_P13NS = st.lists(_P13N, min_size=1, max_size=3).map(lambda xs: "[" + ", ".join(xs) + "]")
MAIL = obj(
    [
        ("personalizations", _P13NS),
        ("from", _SENDER),
        ("subject", st.just('"s"')),
        ("content", st.just('[{"type": "text/plain", "value": "t"}]')),
    ]
)


def go_read(doc: Any) -> Any:
    """The document as a reader matching keys in any letter case sees it: lower-cased keys, the
    last of a repeated key kept (`json.loads` already keeps the last exact repeat)."""
    if isinstance(doc, dict):
        return {k.lower(): go_read(v) for k, v in doc.items()}
    if isinstance(doc, list):
        return [go_read(v) for v in doc]
    return doc


def _emails(value: Any) -> list[str]:
    items = value if isinstance(value, list) else []
    return [i["email"] for i in items if isinstance(i, dict) and isinstance(i.get("email"), str)]


def reference(doc: Any) -> tuple[int, bool]:
    """(addresses SendGrid sends to, whether every recipient and sender domain is allowed)."""
    doc = go_read(doc)
    count, allowed = 0, True
    senders = [doc.get("from")]
    for p in doc.get("personalizations") or []:
        if not isinstance(p, dict):
            continue
        for address in _emails(p.get("to")) + _emails(p.get("cc")) + _emails(p.get("bcc")):
            count += 1
            allowed &= domain_allowed(address.rpartition("@")[2], TO_OK)
        senders.append(p.get("from"))
    for sender in senders:
        if isinstance(sender, dict) and isinstance(sender.get("email"), str):
            allowed &= domain_allowed(sender["email"].rpartition("@")[2], FROM_OK)
    return count, allowed


def twins(body: bytes) -> bool:
    """Whether some object repeats a read key, exactly or in another letter case."""
    found = False

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        nonlocal found
        keys = [k.lower() for k, _ in pairs]
        found |= any(keys.count(f) > 1 for f in READ)
        return dict(pairs)

    json.loads(body, object_pairs_hook=hook)
    return found


@props(1500)
@given(MAIL)
def test_sendgrid_enforces_what_it_reads_or_refuses(text: str) -> None:
    body = text.encode()
    vendor = build_vendors()["sendgrid"]
    call = Call("POST", "/v3/mail/send", body, "application/json")
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
    assert not twins(body), body
    count, allowed = reference(json.loads(body))
    assert allowed, body
    assert amount == count * RATE_MICRO, (amount, count, body)
