"""One parse, generated: bodies built from every field a vendor's pricing, scope or policy reads,
with bracket, index, nested, case, width, whitespace, repeat and query-versus-body variants.

For each, Keybrake's parse (and the decisions made from it) either refuses with a 4xx, or
enforces exactly what the vendor's reference parser (tests/fakes/reference_parsers.py) would act
on: Stripe Rack-style, Twilio a plain literal form, Resend `JSON.parse`.

Examples per run: Stripe 4,000 + Twilio 3,000 + Resend 3,000 + Stripe v2 JSON 500 = 10,500.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlencode

from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.names import fold
from keybrake.core.params import Params
from keybrake.core.policy import ParamRule, Policy
from keybrake.core.request import ProxyRequest
from keybrake.vendors import stripe_objects
from keybrake.vendors.base import VendorRequest
from keybrake.vendors.resend import ENFORCED as RESEND_ENFORCED
from keybrake.vendors.resend import Resend, ResendParse
from keybrake.vendors.stripe import ENFORCED as STRIPE_ENFORCED
from keybrake.vendors.stripe import Stripe
from keybrake.vendors.twilio import ENFORCED as TWILIO_ENFORCED
from keybrake.vendors.twilio import REPEATABLE, Twilio
from tests.fakes.reference_parsers import RackError, json_params, rack_at, rack_flat, stripe_params, twilio_params

FORM = ("content-type", "application/x-www-form-urlencoded")
JSON = ("content-type", "application/json")
RATES = {"usd": Decimal(1), "eur": Decimal("1.09"), "jpy": Decimal("0.0067")}


def props(examples: int) -> settings:
    """`examples` generated cases, without a per-example deadline (a loaded CI box is slow)."""
    return settings(max_examples=examples, deadline=None, suppress_health_check=[HealthCheck.too_slow])


S, T, R = Stripe(), Twilio(), Resend(Decimal("0.0004"))

_BLANKS = " \t\r\n\u00a0\u200b\ufeff"
_FULLWIDTH = {chr(c): chr(c + 0xFEE0) for c in range(0x21, 0x7F)}


def _request(method: str, path: str, query: str, body: bytes, header: tuple[str, str]) -> ProxyRequest:
    return ProxyRequest(method, path.encode(), query.encode(), (header,), body, "127.0.0.1")


def _segs(path: str) -> tuple[str, ...]:
    return tuple(path.strip("/").split("/"))


def _outcome(fn: Any, *args: Any) -> Any:
    """A decision's result, or the code of the Denial it raised (4xx only)."""
    try:
        return fn(*args)
    except Denial as d:
        assert 400 <= d.status < 500, d
        return ("denied", d.code)


def _spellings(name: str) -> list[str]:
    """Spellings a lenient reader might take for `name`: case, width, look-alike blanks."""
    return [
        name.upper(),
        name.lower(),
        name[:1].swapcase() + name[1:],
        "".join(_FULLWIDTH.get(c, c) for c in name),
        name + "\u200b",
        "\ufeff" + name,
        name + " ",
        " " + name,
    ]


def _name_variants(name: str) -> st.SearchStrategy[str]:
    return st.sampled_from([name, *_spellings(name)])


# How a decoded key goes on the wire: brackets literal or escaped, with or without blanks around.
_ENCODINGS = [
    *[lambda k: quote(k, safe="[]")] * 9,
    lambda k: quote(k, safe=""),
    lambda k: quote(k, safe=""),
    lambda k: "+" + quote(k, safe="[]"),
    lambda k: "%20" + quote(k, safe="[]"),
    lambda k: quote(k, safe="[]") + "+",
]
_ENCODING = st.sampled_from(_ENCODINGS)
_PLACE = st.sampled_from(["body", "body", "body", "query"])
_REPEAT = st.integers(0, 3)  # 0: a name drawn again is sent twice; otherwise its value is replaced


def _add(draw: st.DrawFn, entries: list[tuple[str, str, str]], key: str, where: str, text: str) -> None:
    """Add `text` (a `name=value` pair or JSON member) for `key`; most often a key drawn twice is
    kept once, so that repeats are one variant among the others rather than most examples."""
    for i, (k, _, _) in enumerate(entries):
        if k == key and draw(_REPEAT):
            entries[i] = (key, where, text)
            return
    entries.append((key, where, text))


def _join(entries: list[tuple[str, str, str]], where: str, sep: str = "&") -> str:
    return sep.join(text for _, w, text in entries if w == where)


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
    heads = [plain] * 12 + [field] + [s + plain[len(parts[0]) :] for s in _spellings(parts[0])]
    if len(parts) > 1:
        heads += [parts[0] + "".join(f"[{s}]" for s in _spellings(parts[1]))]
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
    entries = [e for e in clean if draw(_REPEAT)]
    for _, key, value in draw(_STRIPE_VARIANTS):
        _add(draw, entries, key, draw(_PLACE), f"{draw(_ENCODING)(key)}={value}")
    entries = draw(st.permutations(entries))
    query, body = _join(entries, "query", draw(_SEPARATOR)), _join(entries, "body", draw(_SEPARATOR))
    return draw(_STRIPE_ENDPOINT), query, body


def _stripe_reference_vreq(path: str, tree: Any) -> VendorRequest:
    """What Stripe acts on, as a VendorRequest: each enforced field's value where it is a string."""
    values: dict[str, tuple[str, ...]] = {
        f: (v,) for f in STRIPE_FIELDS if isinstance(v := rack_at(tree, f.split(".")), str)
    }
    return VendorRequest("POST", _segs(path), Params(values, frozenset(values)))


@props(4000)
@given(stripe_request())
def test_stripe_enforces_what_rack_acts_on_or_refuses(req: tuple[str, str, str]) -> None:
    path, query, body = req
    try:
        vreq = S.parse(_request("POST", path, query, body.encode(), FORM), _segs(path))
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
        one = _outcome(vreq.params.scalar, field)  # a list-shaped name is refused where it is read as one
        assert one == ("denied", "param_ambiguous") or one == (node if isinstance(node, str) else None), field
    for name in tree:  # nothing pricing or scope reads slipped past under a look-alike name
        if fold(name) in {fold(f) for f in STRIPE_ENFORCED}:
            assert name in STRIPE_ENFORCED, name
    ref = _stripe_reference_vreq(path, tree)
    estimate = _outcome(S.estimate, vreq, RATES)
    if not isinstance(estimate, tuple):
        assert estimate == S.estimate(ref, RATES)
    assert _outcome(lambda v: S.check_scope(Policy(), v).customer_scope_id, vreq) == (
        _outcome(lambda v: S.check_scope(Policy(), v).customer_scope_id, ref)
    )
    assert stripe_objects.referenced_object(vreq) == stripe_objects.referenced_object(ref)


@st.composite
def stripe_v2_body(draw: st.DrawFn) -> bytes:
    """A Stripe v2 JSON body: the enforced fields under exact, re-spelled and duplicated keys."""
    members = ['"amount": 100', '"currency": "usd"']
    for _ in range(draw(st.integers(0, 4))):
        field = draw(st.sampled_from(["amount", "currency", "customer", "payment_intent"]))
        key = draw(_name_variants(field))
        value = draw(st.sampled_from(['"cus_B"', "99999", '["cus_A", "cus_B"]', '{"x": 1}', '"usd"']))
        members.append(f"{json.dumps(key)}: {value}")
    members = draw(st.permutations(members))
    return ("{" + ", ".join(members) + "}").encode()


@props(500)
@given(stripe_v2_body())
def test_stripe_v2_json_enforces_what_json_parse_acts_on_or_refuses(body: bytes) -> None:
    path = "/v2/core/vault/things"
    try:
        vreq = S.parse(_request("POST", path, "", body, JSON), _segs(path))
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


# --- Twilio: a plain literal form ---------------------------------------------------------------

MESSAGES = "/2010-04-01/Accounts/AC" + "0" * 32 + "/Messages.json"
CALLS = "/2010-04-01/Accounts/AC" + "0" * 32 + "/Calls.json"
TWILIO_FIELDS: dict[str, list[str]] = {
    "To": ["+14155550100", "+88200000001", "whatsapp:+14155550100", ""],
    "From": ["+14155550199", "MG1"],
    "Body": ["hi", "€" * 90, ""],
    "MediaUrl": ["https://x.test/a.png", "https://x.test/b.png"],
    "ContentSid": ["HX1"],
    "ContentVariables": ['{"1":"a"}'],
    "TimeLimit": ["60", "99999", "x"],
    "Twiml": ["<Response><Dial>+88200000001</Dial></Response>"],
    "Url": ["https://x.test/t.xml"],
    "ApplicationSid": ["AP1"],
    "StatusCallback": ["https://x.test/s"],  # a name only param_rules read
}
# A param_rules name is enforced too: its look-alikes are refused like those of Twilio's own.
TWILIO_SCOPE = Policy(
    param_rules=(ParamRule("StatusCallback", pattern="https://.*"),),
    vendor_data={"allowed_to_prefixes": ["+1"], "max_call_seconds": 120},
)
TWILIO_READ = TWILIO_ENFORCED | {"StatusCallback"}


TWILIO_ENTRIES = [
    (f, name + suffix, quote_plus(v))
    for f, vs in TWILIO_FIELDS.items()
    for name in [f] * 16 + _spellings(f)
    for suffix in [*[""] * 12, "[]", "[0]", "[x]", "]"]
    for v in vs
]
_TWILIO_VARIANTS = st.tuples(
    st.lists(st.sampled_from(TWILIO_ENTRIES), max_size=3),
    st.one_of([st.lists(st.sampled_from([e for e in TWILIO_ENTRIES if e[0] == f]), max_size=3) for f in TWILIO_FIELDS]),
).map(lambda pair: pair[0] + pair[1])
_TWILIO_ENDPOINT = st.sampled_from([MESSAGES, CALLS])


@st.composite
def twilio_request(draw: st.DrawFn) -> tuple[str, str, str]:
    path = draw(_TWILIO_ENDPOINT)
    base = ["To=%2B14155550100", "From=%2B14155550199", "Body=hi" if path == MESSAGES else "Url=https%3A%2F%2Fx"]
    entries = [(e.split("=")[0], "body", e) for e in base if draw(_REPEAT)]
    for _, key, value in draw(_TWILIO_VARIANTS):
        _add(draw, entries, key, draw(_PLACE), f"{draw(_ENCODING)(key)}={value}")
    entries = draw(st.permutations(entries))
    return path, _join(entries, "query"), _join(entries, "body")


def _twilio_decisions(path: str, query: str, body: str) -> Any:
    vreq = T.parse(_request("POST", path, query, body.encode(), FORM), _segs(path))
    scope = T.check_scope(TWILIO_SCOPE, vreq)
    vreq = vreq.scoped(scope)
    return vreq, scope.detail, T.estimate(vreq, RATES)


@props(3000)
@given(twilio_request())
def test_twilio_enforces_what_a_plain_form_acts_on_or_refuses(req: tuple[str, str, str]) -> None:
    path, query, body = req
    try:
        vreq, scope, estimate = _twilio_decisions(path, query, body)
    except Denial as d:
        assert 400 <= d.status < 500, d
        event(f"refused {d.code}")
        return
    event("accepted")
    ref = twilio_params(query, body)
    assert vreq.params.values == {k: tuple(v) for k, v in ref.items()}  # every name: param_rules read any
    folded = {fold(f): f for f in TWILIO_READ}
    for name in ref:  # no look-alike of an enforced name (`To[]`, `to`, ` To`) got through
        base = name.split("[", 1)[0].split("]", 1)[0]
        assert folded.get(fold(base), name) == name, name
    # The same decisions from the clean form of what Twilio acts on (first value, or all for lists).
    clean = urlencode([(k, v) for k, vs in ref.items() for v in (vs if k in REPEATABLE else vs[:1])])
    _, clean_scope, clean_estimate = _twilio_decisions(path, "", clean)
    assert (scope, estimate) == (clean_scope, clean_estimate)


# --- Resend: JSON.parse ------------------------------------------------------------------------

RESEND_VALUES: dict[str, list[str]] = {
    "from": ['"bot@acme.io"', '"x@evil.io"'],
    "to": ['"a@example.com"', '"spy@evil.io"', '["a@example.com", "b@example.com"]', '["a@example.com", "s@evil.io"]'],
    "cc": ['"c@example.com"', '"spy@evil.io"'],
    "bcc": ['"d@example.com"', '["spy@evil.io"]'],
    "subject": ['"s"', '"other"'],
    "html": ['"<p>a</p>"'],
    "text": ['"t"'],
    "template": ['{"id": "t1"}', '{"id": "t1", "variables": {"to": "x"}}', '{"id": "t1", "Id": "t2"}'],
    "labels": ['"a"'],  # not an email field: only the generic JSON key rules apply
}
RESEND_SCOPE = Policy(vendor_data={"allowed_to_domains": ["example.com"], "allowed_from_domains": ["acme.io"]})


RESEND_MEMBERS = [
    (f, json.dumps(key + suffix, ensure_ascii=ascii), v)
    for f, vs in RESEND_VALUES.items()
    for key in [f] * 16 + _spellings(f)
    for suffix in [*[""] * 8, "[]"]
    for ascii in (True, False)
    for v in vs
]
_RESEND_VARIANTS = st.lists(
    st.one_of([st.sampled_from([m for m in RESEND_MEMBERS if m[0] == f]) for f in RESEND_VALUES]),
    max_size=4,
)
_RESEND_QUERY = st.sampled_from([*[""] * 12, "to=spy%40evil.io", "limit=1", "Bcc=x%40evil.io"])
RESEND_BASE = [("from", '"bot@acme.io"'), ("to", '"a@example.com"'), ("subject", '"s"'), ("html", '"<p>a</p>"')]


@st.composite
def resend_email(draw: st.DrawFn) -> str:
    members = [(json.dumps(k), "body", f'"{k}": {v}') for k, v in RESEND_BASE if draw(_REPEAT)]
    for _, key, value in draw(_RESEND_VARIANTS):
        _add(draw, members, key, "body", f"{key}: {value}")
    return "{" + _join(draw(st.permutations(members)), "body", ", ") + "}"


_RESEND_EMAIL = resend_email()
_RESEND_BATCH = st.lists(_RESEND_EMAIL, min_size=1, max_size=3)


@st.composite
def resend_request(draw: st.DrawFn) -> tuple[str, str, bytes]:
    query = draw(_RESEND_QUERY)
    if draw(st.booleans()):
        items = draw(_RESEND_BATCH)
        return "/emails/batch", query, ("[" + ", ".join(items) + "]").encode()
    return "/emails", query, draw(_RESEND_EMAIL).encode()


def _resend_decisions(path: str, query: str, body: bytes) -> Any:
    vreq = R.parse(_request("POST", path, query, body, JSON), _segs(path))
    return vreq, R.check_scope(RESEND_SCOPE, vreq), R.estimate(vreq, RATES), R.dedup_fingerprint(vreq)


def _object_keys(body: bytes) -> list[list[str]]:
    """The keys of every JSON object in `body`, duplicates included."""
    seen: list[list[str]] = []

    def hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        seen.append([k for k, _ in pairs])
        return dict(pairs)

    json.loads(body, object_pairs_hook=hook)
    return seen


def _json_flat(doc: Any) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}

    def walk(path: tuple[str, ...], v: Any) -> None:
        if isinstance(v, dict):
            for k, sub in v.items():
                walk((*path, k), sub)
        elif isinstance(v, list):
            for sub in v:
                walk(path, sub)
        elif path:
            out.setdefault(".".join(path), []).append(v if isinstance(v, str) else json.dumps(v))

    walk((), doc)
    return out


@props(3000)
@given(resend_request())
def test_resend_enforces_what_json_parse_acts_on_or_refuses(req: tuple[str, str, bytes]) -> None:
    path, query, body = req
    try:
        vreq, scope, estimate, dedup = _resend_decisions(path, query, body)
    except Denial as d:
        assert 400 <= d.status < 500, d
        event(f"refused {d.code}")
        return
    event("accepted")
    doc = json_params(body)
    flat = _json_flat(doc)  # every name, since param_rules may name any parameter
    in_query = {k for k, _ in parse_qsl(query, keep_blank_values=True)}
    from_body = {k: sorted(v) for k, v in vreq.params.values.items() if k not in in_query}
    assert from_body == {k: sorted(v) for k, v in flat.items()}
    for keys in _object_keys(body):  # no duplicate, padded or case-twin key at any depth
        assert len({fold(k) for k in keys}) == len(keys), keys
        assert all(k == k.strip(_BLANKS) for k in keys), keys
    folded = {fold(f): f for f in RESEND_ENFORCED}
    assert not {fold(n) for n in in_query} & set(folded), in_query  # Resend reads no email field there
    for item in doc if isinstance(doc, list) else [doc]:
        for key in item:  # no look-alike of an email field (`To`, `"bcc "`, `ｔｏ`) got through
            assert folded.get(fold(key.split("[", 1)[0]), key) == key, key
    # The same decisions from the document as Resend reads it, re-encoded cleanly.
    clean = _resend_decisions(path, "", json.dumps(doc).encode())
    assert (scope, estimate, dedup) == clean[1:]
    assert isinstance(vreq.detail, ResendParse) and isinstance(clean[0].detail, ResendParse)
    assert vreq.detail.emails == clean[0].detail.emails


def test_stripe_v2_query_and_json_body_name_a_parameter_once() -> None:
    path = "/v2/core/things"
    with_query = _request("POST", path, "customer=cus_A", b'{"customer": "cus_B"}', JSON)
    try:
        S.parse(with_query, _segs(path))
    except Denial as d:
        assert d.code == "param_ambiguous"
    else:
        raise AssertionError("customer in the query and the body was accepted")
    ok = S.parse(_request("POST", path, "", b'{"customer": "cus_A"}', JSON), _segs(path))
    assert S.check_scope(Policy(customer_allowlist=frozenset({"cus_A"})), ok).customer_scope_id == "cus_A"
