"""One parse, generated (see tests/vendors/one_parse_gen.py), Resend: JSON bodies built from every member
Resend's pricing, scope or policy reads, with case, width, whitespace, repeat and query-versus-body
variants; Keybrake's parse either refuses with a 4xx or enforces exactly what `JSON.parse`
(tests/fakes/reference_parsers.py) would act on.

Examples per run: Resend 3,000.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qsl

from hypothesis import event, given
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.names import fold
from keybrake.core.policy import Policy
from keybrake.vendors.resend import ENFORCED as RESEND_ENFORCED
from keybrake.vendors.resend import ResendParse
from tests.fakes.reference_parsers import json_params
from tests.vendors.one_parse_gen import (
    BLANKS,
    JSON,
    RATES,
    REPEAT,
    R,
    add_entry,
    join_entries,
    props,
    proxy_request,
    segments,
    spellings,
)

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
    for key in [f] * 16 + spellings(f)
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
    members = [(json.dumps(k), "body", f'"{k}": {v}') for k, v in RESEND_BASE if draw(REPEAT)]
    for _, key, value in draw(_RESEND_VARIANTS):
        add_entry(draw, members, key, "body", f"{key}: {value}")
    return "{" + join_entries(draw(st.permutations(members)), "body", ", ") + "}"


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
    vreq = R.parse(proxy_request("POST", path, query, body, JSON), segments(path))
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
        assert all(k == k.strip(BLANKS) for k in keys), keys
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
