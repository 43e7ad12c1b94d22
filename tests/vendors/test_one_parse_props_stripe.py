"""One parse, generated (see tests/vendors/one_parse_gen.py), Stripe: form bodies built from every field
Stripe's pricing, scope or policy reads, in Rack's bracket, index and nested shapes and lenient
spellings; Keybrake's parse either refuses with a 4xx or enforces exactly what Rack
(tests/fakes/reference_parsers.py) would act on. Stripe v2 JSON bodies against `JSON.parse`.

Examples per run: Stripe 4,000 + Stripe v2 JSON 500 (with Twilio and Resend: 10,500).
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote_plus

from hypothesis import event, given
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.names import fold
from keybrake.core.params import Params
from keybrake.core.policy import Policy
from keybrake.vendors import stripe_objects
from keybrake.vendors.base import VendorRequest
from keybrake.vendors.stripe import ENFORCED as STRIPE_ENFORCED
from tests.fakes.reference_parsers import RackError, json_params, rack_at, rack_flat, stripe_params
from tests.vendors.one_parse_gen import (
    ENCODING,
    FORM,
    JSON,
    PLACE,
    RATES,
    REPEAT,
    S,
    add_entry,
    join_entries,
    name_variants,
    outcome,
    props,
    proxy_request,
    segments,
    spellings,
)

# --- Stripe: Rack-style -------------------------------------------------------------------------

STRIPE_FIELDS: dict[str, list[str]] = {
    "amount": ["100", "99999", "0", "1.5", ""],
    "currency": ["usd", "USD", "eur", "jpy", "xx"],
    "customer": ["cus_A", "cus_B", ""],
    "confirm": ["true", "false", "1"],
    "capture": ["true", "false"],
    "capture_method": ["manual", "automatic", "manual_preferred"],
    "payment_intent": ["pi_1", "pi_2"],
    "charge": ["ch_1", "ch_2"],
    "invoice": ["in_1"],
    "amount_to_capture": ["50", "5000"],
    "refund_amount": ["10"],
    "idempotency_key": ["k1"],
    "metadata.order_id": ["ord_1", "evil"],
    "description": ["d"],  # names only param_rules read
    "expand": ["customer"],
}
STRIPE_ENDPOINTS = [
    "/v1/charges",
    "/v1/payment_intents",
    "/v1/refunds",
    "/v1/credit_notes",
    "/v1/payouts",
    "/v1/payment_intents/pi_1/capture",
    "/v1/customers/cus_A",
]
_SUFFIXES = [*[""] * 9, "[]", "[0]", "[1]", "[00]", "[x]", "[][]", "[][x]", "[0][x]", "[x][]"]


def _stripe_keys(field: str) -> list[str]:
    """Decoded form keys for `field`, in the shapes and spellings Rack tells apart."""
    parts = field.split(".")
    plain = parts[0] + "".join(f"[{p}]" for p in parts[1:])
    heads = [plain] * 12 + [field] + [s + plain[len(parts[0]) :] for s in spellings(parts[0])]
    if len(parts) > 1:
        heads += [parts[0] + "".join(f"[{s}]" for s in spellings(parts[1]))]
    return [h + suffix for h in heads for suffix in _SUFFIXES]


STRIPE_ENTRIES = [(f, k, quote_plus(v)) for f, vs in STRIPE_FIELDS.items() for k in _stripe_keys(f) for v in vs]
# Strategies are built once: building one over a long list per draw costs more than the test.
# Each example also sends one field several times over (in different shapes, spellings, places).
_STRIPE_VARIANTS = st.tuples(
    st.lists(st.sampled_from(STRIPE_ENTRIES), max_size=3),
    st.one_of([st.lists(st.sampled_from([e for e in STRIPE_ENTRIES if e[0] == f]), max_size=3) for f in STRIPE_FIELDS]),
).map(lambda pair: pair[0] + pair[1])
_STRIPE_ENDPOINT = st.sampled_from(STRIPE_ENDPOINTS)
_SEPARATOR = st.sampled_from(["&"] * 6 + ["& ", "&&"])


@st.composite
def stripe_request(draw: st.DrawFn) -> tuple[str, str, str]:
    """(path, query, body): a clean amount and currency plus up to six variants, shuffled."""
    clean = [("amount", "body", "amount=100"), ("currency", "body", "currency=usd")]
    entries = [e for e in clean if draw(REPEAT)]
    for _, key, value in draw(_STRIPE_VARIANTS):
        add_entry(draw, entries, key, draw(PLACE), f"{draw(ENCODING)(key)}={value}")
    entries = draw(st.permutations(entries))
    query, body = join_entries(entries, "query", draw(_SEPARATOR)), join_entries(entries, "body", draw(_SEPARATOR))
    return draw(_STRIPE_ENDPOINT), query, body


def _stripe_reference_vreq(path: str, tree: Any) -> VendorRequest:
    """What Stripe acts on, as a VendorRequest: each enforced field's value where it is a string."""
    values: dict[str, tuple[str, ...]] = {
        f: (v,) for f in STRIPE_FIELDS if isinstance(v := rack_at(tree, f.split(".")), str)
    }
    return VendorRequest("POST", segments(path), Params(values, frozenset(values)))


@props(4000)
@given(stripe_request())
def test_stripe_enforces_what_rack_acts_on_or_refuses(req: tuple[str, str, str]) -> None:
    path, query, body = req
    try:
        vreq = S.parse(proxy_request("POST", path, query, body.encode(), FORM), segments(path))
    except Denial as d:
        assert d.status == 400 or d.code == "param_not_allowed", d
        event(f"refused {d.code}")
        return
    event("accepted")
    try:
        tree = stripe_params(query, body)
    except RackError as exc:  # Keybrake let through what Stripe refuses as malformed
        raise AssertionError(f"accepted, but Rack raises: {exc}") from exc
    flat = rack_flat(tree)  # every name, since param_rules may name any parameter
    # key=repr: a leaf may be None (a bare name), which does not compare with strings
    assert {k: sorted(v, key=repr) for k, v in vreq.params.values.items()} == {
        k: sorted(v, key=repr) for k, v in flat.items()
    }
    for field in STRIPE_FIELDS:
        node = rack_at(tree, field.split("."))
        one = outcome(vreq.params.scalar, field)  # a list-shaped name is refused where it is read as one
        assert one == ("denied", "param_ambiguous") or one == (node if isinstance(node, str) else None), field
    for name in tree:  # nothing pricing or scope reads slipped past under a look-alike name
        if fold(name) in {fold(f) for f in STRIPE_ENFORCED}:
            assert name in STRIPE_ENFORCED, name
    ref = _stripe_reference_vreq(path, tree)
    estimate = outcome(S.estimate, vreq, RATES)
    if not isinstance(estimate, tuple):
        assert estimate == S.estimate(ref, RATES)
    assert outcome(lambda v: S.check_scope(Policy(), v).customer_scope_id, vreq) == (
        outcome(lambda v: S.check_scope(Policy(), v).customer_scope_id, ref)
    )
    assert stripe_objects.referenced_object(vreq) == stripe_objects.referenced_object(ref)


@st.composite
def stripe_v2_body(draw: st.DrawFn) -> bytes:
    """A Stripe v2 JSON body: the enforced fields under exact, re-spelled and duplicated keys."""
    members = ['"amount": 100', '"currency": "usd"']
    for _ in range(draw(st.integers(0, 4))):
        field = draw(st.sampled_from(["amount", "currency", "customer", "payment_intent"]))
        key = draw(name_variants(field))
        value = draw(st.sampled_from(['"cus_B"', "99999", '["cus_A", "cus_B"]', '{"x": 1}', '"usd"']))
        members.append(f"{json.dumps(key)}: {value}")
    members = draw(st.permutations(members))
    return ("{" + ", ".join(members) + "}").encode()


@props(500)
@given(stripe_v2_body())
def test_stripe_v2_json_enforces_what_json_parse_acts_on_or_refuses(body: bytes) -> None:
    path = "/v2/core/vault/things"
    try:
        vreq = S.parse(proxy_request("POST", path, "", body, JSON), segments(path))
    except Denial as d:
        assert d.status == 400, d
        return
    doc = json_params(body)
    for field in ("amount", "currency", "customer", "payment_intent"):
        ref = doc.get(field)
        want = (
            None
            if field not in doc or isinstance(ref, dict | list)
            else ref
            if isinstance(ref, str)
            else json.dumps(ref)
        )
        assert vreq.params.scalar(field) == want, field
    assert all(k in doc for k in vreq.params.tops) and len(doc) == len(vreq.params.tops)


def test_stripe_v2_query_and_json_body_name_a_parameter_once() -> None:
    path = "/v2/core/things"
    with_query = proxy_request("POST", path, "customer=cus_A", b'{"customer": "cus_B"}', JSON)
    try:
        S.parse(with_query, segments(path))
    except Denial as d:
        assert d.code == "param_ambiguous"
    else:
        raise AssertionError("customer in the query and the body was accepted")
    ok = S.parse(proxy_request("POST", path, "", b'{"customer": "cus_A"}', JSON), segments(path))
    assert S.check_scope(Policy(customer_allowlist=frozenset({"cus_A"})), ok).customer_scope_id == "cus_A"
