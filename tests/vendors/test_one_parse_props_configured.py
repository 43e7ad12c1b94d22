"""One parse, generated (tests/vendors/one_parse_gen.py), for a vendor defined by a file: JSON and
form bodies built from the fields its definition reads (`to`, `cc`, `from`), with case, width,
blank, duplicate-key and query-versus-body variants, under `json_keys = "exact"` and
`"case_insensitive"`. Keybrake either refuses with a 4xx, or counts, prices and scopes exactly
the values the vendor's own reader acts on: `JSON.parse` (exact keys, the last duplicate wins),
a case-insensitive .NET reader (any ASCII case), or a plain form parser.

SMSCo's forms (the worked example of docs/vendors.md): `to`, read as a list, may repeat; every
other field is sent once; look-alikes (`To`, `to[]`) are refused.

Examples per run: 1,500 per reader.
"""

from __future__ import annotations

import json
from decimal import Decimal
from email.utils import getaddresses
from typing import Any
from urllib.parse import parse_qsl, quote

import pytest
from hypothesis import event, given
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.policy import Policy
from keybrake.vendors.configured.definition import parse_definition
from keybrake.vendors.configured.load import spec_of
from keybrake.vendors.configured.reading import ConfiguredParse
from keybrake.vendors.configured.vendor import ConfiguredVendor
from tests.vendors.configured_smsco import smsco_toml
from tests.vendors.configured_toml import dumps
from tests.vendors.one_parse_gen import FORM, JSON, add_entry, join_entries, props, proxy_request, spellings

pytestmark = pytest.mark.store_free
FIELDS = ("to", "cc", "from")
SCOPE = Policy(vendor_data={"allowed_to_domains": ["example.com"], "allowed_senders": ["bot@acme.io"]})


def _vendor(json_keys: str) -> ConfiguredVendor:
    doc = {
        "format": 1,
        "name": "mailco",
        "base_url": "https://api.mailco.example",
        "upstream_hosts": ["api.mailco.example"],
        "credential": {"inject": "bearer"},
        "request": {"bodies": ["json", "form"], "json_keys": json_keys},
        "error": {"body": {"error": "{code}", "message": "{message}"}},
        "endpoint": [
            {
                "match": "POST /send",
                "pricing": "per_item",
                "usd": "0.001",
                "items": {"count": "addresses", "paths": ["to", "cc"]},
            },
        ],
        "scope": [
            {"field": "allowed_to_domains", "match": "email_domain", "paths": ["to", "cc"]},
            {"field": "allowed_senders", "match": "exact", "paths": ["from"]},
        ],
    }
    spec = spec_of(parse_definition(dumps(doc), "mailco.toml", "mailco"))
    v = spec.build({})
    assert isinstance(v, ConfiguredVendor)
    return v


EXACT, INSENSITIVE = _vendor("exact"), _vendor("case_insensitive")
VALUES: dict[str, list[Any]] = {
    "to": ["a@example.com", "spy@evil.io", "a@example.com, b@example.com", '"Doe, J" <j@example.com>',
           ["a@example.com", "s@evil.io"], ["b@example.com"]],
    "cc": ["c@example.com", "spy@evil.io", []],
    "from": ["bot@acme.io", "x@evil.io"],
}  # fmt: skip
MEMBERS = [(f, key, v) for f, vs in VALUES.items() for key in [f] * 8 + spellings(f) for v in vs]
_VARIANTS = st.lists(st.sampled_from(MEMBERS), max_size=5)
_QUERY = st.sampled_from(["", "", "", "", "to=spy%40evil.io", "limit=1", "From=x%40evil.io"])


@st.composite
def requests(draw: st.DrawFn) -> tuple[str, bytes, tuple[str, str]]:
    entries: list[tuple[str, str, str]] = []
    as_form = draw(st.booleans())
    base = [("to", "a@example.com"), ("from", "bot@acme.io")]
    for _f, key, value in [(f, f, v) for f, v in base] + draw(_VARIANTS):
        if as_form:
            if isinstance(value, list):
                continue
            add_entry(draw, entries, key, "body", f"{quote(key, safe='')}={quote(value, safe='')}")
        else:
            add_entry(draw, entries, key, "body", f"{json.dumps(key)}: {json.dumps(value)}")
    entries = draw(st.permutations(entries))
    query = draw(_QUERY)
    if as_form:
        return query, join_entries(entries, "body").encode(), FORM
    return query, ("{" + join_entries(entries, "body", ", ") + "}").encode(), JSON


def _pairs(pairs: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return pairs


def reference(body: bytes, header: tuple[str, str], insensitive: bool) -> dict[str, list[Any]]:
    """What the vendor acts on: field → its value(s). JSON: the last duplicate wins; a
    case-insensitive reader takes any ASCII case; a form: the first value of a name."""
    if header == FORM:
        form: dict[str, list[Any]] = {}
        for k, v in parse_qsl(body.decode(), keep_blank_values=True):
            if k in FIELDS and k not in form:
                form[k] = [v]
        return form
    doc: dict[str, list[Any]] = {}
    for k, v in json.loads(body, object_pairs_hook=_pairs):
        name = k.lower() if insensitive else k
        if name in FIELDS:
            doc[name] = [v]
    return doc


def addresses(values: list[Any]) -> list[str]:
    out: list[str] = []
    for v in values:
        for item in v if isinstance(v, list) else [v]:
            out += [addr for _, addr in getaddresses([item])]
    return out


@pytest.mark.parametrize("vendor", [EXACT, INSENSITIVE], ids=["exact", "case_insensitive"])
@props(1500)
@given(req=requests())
def test_a_configured_vendor_enforces_what_its_reader_acts_on_or_refuses(
    vendor: ConfiguredVendor, req: tuple[str, bytes, tuple[str, str]]
) -> None:
    query, body, header = req
    try:
        vreq = vendor.parse(proxy_request("POST", "/send", query, body, header), ("send",))
        estimate = vendor.estimate(vreq, {"usd": Decimal(1)})
        verdict = _verdict(vendor, vreq)
    except Denial as d:
        assert 400 <= d.status < 500, d
        event(f"refused {d.code}")
        return
    event("accepted")
    acted = reference(body, header, vendor is INSENSITIVE)
    assert not {k for k, _ in parse_qsl(query)} & set(FIELDS), query  # a read field only in the body
    recipients = addresses(acted.get("to", []) + acted.get("cc", []))
    assert estimate.amount == 1_000 * len(recipients), (acted, estimate)
    detail = vreq.detail
    assert isinstance(detail, ConfiguredParse)
    assert sorted(detail.scoped[0]) == sorted(a.rsplit("@", 1)[1].lower() for a in recipients)
    assert list(detail.scoped[1]) == acted.get("from", [])
    outside = [a for a in recipients if not a.endswith("@example.com")] or acted.get("from") != ["bot@acme.io"]
    assert verdict == ("refused" if outside else "allowed"), (acted, verdict)


def _verdict(vendor: ConfiguredVendor, vreq: Any) -> str:
    try:
        vendor.check_scope(SCOPE, vreq)
    except Denial as d:
        assert d.code == "scope_violation"
        return "refused"
    return "allowed"


# --- forms: SMSCo (docs/vendors.md's worked example), where `to` is a list sent by repeating it ---

SMSCO = spec_of(parse_definition(smsco_toml(), "smsco.toml", "smsco")).build(
    {"keybrake_smsco_usd_per_sms": Decimal("0.01")}
)
FORM_NAMES = {"to": ["%2B14155550100", "%2B442079460958"], "from": ["%2B14155550199", "%2B1999"], "text": ["hi"]}
FORM_MEMBERS = [(f, k, v) for f, vs in FORM_NAMES.items() for k in [f] * 6 + [*spellings(f), f + "[]"] for v in vs]


@st.composite
def smsco_forms(draw: st.DrawFn) -> tuple[str, bytes]:
    pairs = [("to", "%2B14155550100"), ("from", "%2B14155550199"), ("text", "hi")]
    pairs += [(k, v) for _, k, v in draw(st.lists(st.sampled_from(FORM_MEMBERS), max_size=5))]
    body = "&".join(f"{quote(k, safe='[]')}={v}" for k, v in draw(st.permutations(pairs)))
    return draw(st.sampled_from(["", "", "", "to=%2B1", "To=%2B1", "limit=1"])), body.encode()


@props(1500)
@given(req=smsco_forms())
def test_a_repeated_form_field_is_read_whole_and_nothing_else_repeats(req: tuple[str, bytes]) -> None:
    query, body = req
    try:
        vreq = SMSCO.parse(proxy_request("POST", "/v1/messages", query, body, FORM), ("v1", "messages"))
        estimate = SMSCO.estimate(vreq, {"usd": Decimal(1)})
    except Denial as d:
        assert 400 <= d.status < 500, d
        event(f"refused {d.code}")
        return
    event("accepted")
    pairs = parse_qsl(body.decode(), keep_blank_values=True)  # the vendor's form reader
    to = [v for k, v in pairs if k == "to"]
    senders = [v for k, v in pairs if k == "from"]
    assert estimate.amount == 10_000 * len(to) and estimate.sends == len(to)
    assert len(senders) == 1  # a field read as one value was sent once
    assert not any(k != "to" and k.lower().strip() in ("to", "to[]") for k, _ in pairs)  # no look-alike of `to`
    detail = vreq.detail
    assert isinstance(detail, ConfiguredParse)
    assert list(detail.scoped[0]) == to and list(detail.scoped[1]) == senders
