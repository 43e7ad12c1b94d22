"""Kinds of fault the red team found in vendors defined by a file, each closed by a mechanism and
generated here: one field read in two shapes (items counting vs scopes), a path spelling a vendor's
router may take for a listed endpoint, inconsistent header options, and the minor-unit table.
The secret-crossing kinds (credential echoes, the vault key leaving) are in test_secret_crossing.py."""

from __future__ import annotations

from decimal import Decimal
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.paths import normalise_path
from keybrake.vendors.configured import schema as s
from keybrake.vendors.configured.definition import parse_definition
from keybrake.vendors.configured.load import spec_of
from keybrake.vendors.configured.vendor import ConfiguredVendor
from tests.vendors.configured_smsco import smsco_toml
from tests.vendors.one_parse_gen import props
from tests.vendors.test_configured_vendor import RATES, call, denied, vendor

pytestmark = pytest.mark.store_free

# -- one field, one reader: items counting and scopes ----------------------------------------

QCO_SEND = {"match": "POST /send", "pricing": "per_item", "usd": "0.01", "sends": "items"}


def values_vendor(paths: list[str]) -> ConfiguredVendor:
    return vendor(
        endpoint=[{**QCO_SEND, "items": {"count": "values", "paths": paths}}],
        scope=[{"field": "allowed_events", "match": "exact", "paths": paths}],
    )


def test_a_list_is_counted_entry_by_entry_as_its_scope_reads_it() -> None:
    v = values_vendor(["to"])
    vreq = call(v, "POST", "/send", {"to": [f"u{i}@x.example" for i in range(5)], "event": "e"})
    est = v.estimate(vreq, RATES)
    assert (est.amount, est.sends) == (50_000, 5)  # five sends at $0.01, not one
    assert len(vreq.detail.scoped[0]) == 5
    assert denied(call, v, "POST", "/send", {"to": [["a", "b"]]}).code == "body_invalid"  # nested: refused
    assert denied(call, v, "POST", "/send", {"to": ["a", None]}).code == "body_invalid"


def test_values_counted_where_a_scope_reads_addresses_is_refused() -> None:
    mail = {"field": "allowed_to_domains", "match": "email_domain", "paths": ["to"]}
    with pytest.raises(s.DefinitionError, match=r"endpoint\[0\]\.items\.count.*use count = 'addresses'"):
        vendor(endpoint=[{**QCO_SEND, "items": {"count": "values", "paths": ["to"]}}], scope=[mail])
    v = vendor(endpoint=[{**QCO_SEND, "items": {"count": "addresses", "paths": ["to"]}}], scope=[mail])
    vreq = call(v, "POST", "/send", {"to": "a@x.io, b@y.io"})
    assert v.estimate(vreq, RATES).sends == len(vreq.detail.scoped[0]) == 2


entry = st.sampled_from(["a", "b@x.io", "+1415", "evt"])
odd_entry = st.one_of(entry, st.none(), st.lists(entry, max_size=2))  # null and nested entries: refused
field_value = st.one_of(st.none(), entry, st.lists(entry, max_size=6), st.lists(odd_entry, max_size=3))


@props(300)
@given(to=field_value, cc=field_value, more=st.lists(st.dictionaries(st.just("to"), field_value), max_size=3))
def test_count_values_equals_the_number_of_values_the_scope_checks(to: Any, cc: Any, more: list[Any]) -> None:
    """Every generated body is either refused whole, or counted exactly as its scope reads it."""
    v = values_vendor(["to", "cc", "more[*].to"])
    body = {k: x for k, x in (("to", to), ("cc", cc), ("more", more)) if x is not None}
    lists = [x for x in (to, cc, *(m.get("to") for m in more)) if isinstance(x, list)]
    odd = any(e is None or isinstance(e, list) for x in lists for e in x)
    try:
        vreq = call(v, "POST", "/send", body)
    except Denial as d:
        assert odd and d.code == "body_invalid", d
        return
    assert not odd
    flat = [
        e for x in (to, cc, *(m.get("to") for m in more)) if x is not None for e in (x if isinstance(x, list) else [x])
    ]
    est = v.estimate(vreq, RATES)
    assert est.sends == len(vreq.detail.scoped[0]) == vreq.detail.items == len(flat)


# -- path spellings ---------------------------------------------------------------------------


def smsco() -> ConfiguredVendor:
    spec = spec_of(parse_definition(smsco_toml(), "smsco.toml", "smsco"))
    built = spec.build(spec.values({}))
    assert isinstance(built, ConfiguredVendor)
    return built


def classify(v: ConfiguredVendor, method: str, raw: bytes) -> s.Endpoint | str:
    """The endpoint `raw` is classified as, "refused" (path_invalid) or "guarded" (the guarded
    check refuses it unless the key names that spelling)."""
    try:
        path = v.canonical(method, normalise_path(raw))
    except Denial as d:
        assert d.code == "path_invalid", d
        return "refused"
    if any(g.matches(method, path) for g in v.guarded):
        return "guarded"
    found = next((e for e in v.endpoints if e.match.matches(method, path)), None)
    return found if found is not None else "unlisted"


@pytest.mark.parametrize(
    ("method", "raw"),
    [
        ("POST", b"/v1/messages.json"),
        ("POST", b"/v1/messages;v=2"),
        ("POST", b"/v1/messages%20"),
        ("POST", b"/v1/messages.xml"),
        ("POST", b"/v1/MESSAGES"),
        ("GET", b"/v1/keys.json"),
        ("GET", b"/v1/keys;x"),
    ],
)
def test_red_team_spellings_of_listed_endpoints_are_refused(method: str, raw: bytes) -> None:
    assert classify(smsco(), method, raw) == "refused"


def test_plain_ids_and_catch_all_reads_still_pass() -> None:
    v = smsco()
    for raw in (b"/v1/messages/msg_1", b"/v1/messages/msg-1.2", b"/v1/numbers/+14155550100", b"/v1/a@b.io"):
        found = classify(v, "GET", raw)
        assert isinstance(found, s.Endpoint) and found.pricing == "free", raw


SUFFIXES = [".json", ".xml", ".JSON", ".x", ";v=2", ";", ",a", " ", "\t", ".json;x"]


@st.composite
def spellings(draw: st.DrawFn) -> tuple[str, bytes, s.Endpoint]:
    """A sensitive listed endpoint and one spelling of it: a suffix on a segment, a case change,
    percent-encodings (of a letter, of a blank), in any combination."""
    v = smsco()
    choices = [(m, e) for e in v.endpoints if e.pricing != "free" or e.guarded for m in ("GET", "POST", "DELETE")]
    method, e = draw(st.sampled_from([(m, e) for m, e in choices if e.match.methods is None or m in e.match.methods]))
    segs = [seg for seg in e.match.segments if seg != "**"]
    raw = [quote(seg, safe="").encode() for seg in segs]
    for _ in range(draw(st.integers(1, 3))):
        i = draw(st.integers(0, len(raw) - 1))
        kind = draw(st.sampled_from(["suffix", "case", "pct_letter", "pct_blank"]))
        if kind == "suffix":
            raw[i] += quote(draw(st.sampled_from(SUFFIXES)), safe=";,.").encode()
        elif kind == "case":
            raw[i] = raw[i].swapcase()
        elif kind == "pct_letter" and raw[i][:1].isalpha():
            raw[i] = f"%{raw[i][0]:02X}".encode() + raw[i][1:]
        else:
            raw[i] += draw(st.sampled_from([b"%20", b"%09", b"%0A", b"%C2%A0"]))
    return method, b"/" + b"/".join(raw), e


@props(300)
@given(case=spellings())
def test_a_spelling_of_a_listed_endpoint_is_that_endpoint_or_refused(case: tuple[str, bytes, s.Endpoint]) -> None:
    method, raw, listed = case
    found = classify(smsco(), method, raw)
    assert found in ("refused", "guarded", listed), f"{method} {raw!r} → {found}"


ITEM_CANCEL = {"match": "POST /items/*", "pricing": "fixed", "usd": "0.01"}


def test_path_characters_opt_in_and_its_check() -> None:
    v = vendor(request={"path_characters": ":"}, endpoint=[ITEM_CANCEL])
    assert call(v, "POST", "/items/abc:cancel", {"a": 1}).detail.endpoint is not None
    plain = vendor(endpoint=[ITEM_CANCEL])
    assert denied(call, plain, "POST", "/items/abc:cancel", {"a": 1}).code == "path_invalid"
    with pytest.raises(s.DefinitionError, match="path_characters"):
        vendor(request={"path_characters": "/"})


# -- header options: one rule ----------------------------------------------------------------

OPTIONS = [
    ("idempotency_header", lambda h: h),
    ("request_id_header", lambda h: h),
    ("forward_headers", lambda h: [h.lower()]),
    ("refuse_headers", lambda h: [h.lower()]),
]
SECRET_HEADERS = [
    ({"credential": {"inject": "header", "header": "X-Api-Token"}}, "X-Api-Token"),
    ({"vault_key": {"arrives": "header", "header": "X-Vault"}}, "X-Vault"),
]


@pytest.mark.parametrize(("option", "spell"), OPTIONS)
@pytest.mark.parametrize(("over", "header"), SECRET_HEADERS)
def test_every_header_option_differs_from_the_credential_and_vault_key_headers(
    option: str, spell: Any, over: dict[str, Any], header: str
) -> None:
    with pytest.raises(s.DefinitionError, match=rf"request\.{option}.*(credential|vault key)'s header"):
        vendor(**over, request={option: spell(header)})
    vendor(**over, request={option: spell("X-Other")})  # another header is fine


# -- minor units -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("table", "currency", "minor", "major"),
    [
        ("iso4217", "isk", 1000, Decimal(1000)),
        ("stripe", "isk", 1000, Decimal(10)),
        ("iso4217", "jpy", 500, Decimal(500)),
        ("stripe", "jpy", 500, Decimal(500)),
        ("iso4217", "kwd", 1500, Decimal("1.5")),
        ("stripe", "kwd", 1500, Decimal("1.5")),
        ("iso4217", "eur", 1050, Decimal("10.5")),
        (None, "isk", 1000, Decimal(1000)),  # the default is ISO 4217
    ],
)
def test_minor_units_follow_the_named_table(table: str | None, currency: str, minor: int, major: Decimal) -> None:
    money: dict[str, Any] = {"path": "amount", "unit": "minor", "currency_path": "currency"}
    if table is not None:
        money["minor_units"] = table
    v = vendor(endpoint=[{"match": "POST /pay", "pricing": "amount", "amount": money}])
    assert call(v, "POST", "/pay", {"amount": minor, "currency": currency}).detail.amount == (major, currency)


def test_minor_units_is_read_only_with_minor_amounts() -> None:
    money = {"path": "amount", "unit": "major", "currency": "usd", "minor_units": "stripe"}
    with pytest.raises(s.DefinitionError, match="minor_units"):
        vendor(endpoint=[{"match": "POST /pay", "pricing": "amount", "amount": money}])
