"""One parse, generated (see tests/vendors/one_parse_gen.py), Segment: JSON bodies built from the
members the Segment definition reads (`batch`, each message's `type` and `event`) and the
top-level `writeKey` it checks and removes, with case, width, whitespace, Go case-fold (Kelvin
sign, long s) and repeat variants. Keybrake's parse either refuses with a 4xx or enforces exactly
what a Go reader (tests/fakes/segment_server/reading.py) would act on: the events counted, the
event names and message types scoped, and no write key left in the forwarded body.

Examples per run: 2,000 (a third on the PostgreSQL pass).
"""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import event, given
from hypothesis import strategies as st

from keybrake.config import from_env
from keybrake.core.errors import Denial
from keybrake.core.policy import Policy
from keybrake.core.request import ProxyRequest
from keybrake.vendors import build_vendors
from tests.fakes.segment_server.reading import go_field, go_fold, go_members, go_plain
from tests.harness import examples
from tests.vendors.one_parse_gen import JSON, RATES, REPEAT, add_entry, join_entries, props, spellings

SEG = build_vendors(from_env({"KEYBRAKE_SEGMENT_USD_PER_EVENT": "0.001"}))["segment"]
SCOPE = Policy(vendor_data={"allowed_events": ["A"], "allowed_types": ["track"]})
GO_FOLDS = {"batch": [], "type": [], "event": [], "writeKey": ["write\u212aey"], "userId": ["u\u017ferId"]}
VAULT_KEY = "vault_key_" + "x" * 43  # what the request's Authorization header carries (Basic user)
AUTH = ("authorization", "Basic " + base64.b64encode(f"{VAULT_KEY}:".encode()).decode())

VALUES: dict[str, list[str]] = {
    "type": ['"track"', '"alias"', '"Track"', "1"],
    "event": ['"A"', '"B"', '"a"', "7", "null"],
    "userId": ['"u1"'],
    "writeKey": [json.dumps(VAULT_KEY)] * 3 + ['"not-the-key"', "null"],
}
IN_MESSAGES = ("type", "event", "userId")


def _names(name: str) -> list[str]:
    return [*[name] * 12, *spellings(name), *GO_FOLDS[name]]


def _member(draw: st.DrawFn, name: str) -> tuple[str, str, str]:
    key = json.dumps(draw(st.sampled_from(_names(name))), ensure_ascii=draw(st.booleans()))
    return key, "body", f"{key}: {draw(st.sampled_from(VALUES[name]))}"


@st.composite
def message(draw: st.DrawFn, base: dict[str, str], extra: tuple[str, ...]) -> str:
    members = [(json.dumps(k), "body", f'"{k}": {v}') for k, v in base.items() if draw(REPEAT)]
    for _ in range(draw(st.integers(0, 3))):
        add_entry(draw, members, *_member(draw, draw(st.sampled_from(extra))))
    return "{" + join_entries(draw(st.permutations(members)), "body", ", ") + "}"


_TRACK = message({"type": '"track"', "userId": '"u1"', "event": '"A"'}, IN_MESSAGES)
_SINGLE = message({"userId": '"u1"', "event": '"A"', "writeKey": json.dumps(VAULT_KEY)}, (*IN_MESSAGES, "writeKey"))


@st.composite
def request(draw: st.DrawFn) -> tuple[str, bytes]:
    if draw(st.booleans()):
        return "/v1/track", draw(_SINGLE).encode()
    top = [
        (json.dumps(k), "body", f"{json.dumps(k)}: [{', '.join(draw(st.lists(_TRACK, max_size=3)))}]")
        for k in draw(st.lists(st.sampled_from(_names("batch")), min_size=1, max_size=2))
    ]
    for _ in range(draw(st.integers(0, 2))):  # the library's own `writeKey`, and variants
        top.append(_member(draw, "writeKey"))
    return "/v1/batch", ("{" + join_entries(draw(st.permutations(top)), "body", ", ") + "}").encode()


def _decide(path: str, body: bytes, policy: Policy) -> Any:
    segs = tuple(path.strip("/").split("/"))
    req = ProxyRequest("POST", path.encode(), b"", (JSON, AUTH), body, "127.0.0.1")
    vreq = SEG.parse(req, SEG.canonical("POST", segs))
    SEG.precheck(policy, vreq)
    vreq = vreq.scoped(SEG.check_scope(policy, vreq))
    return vreq, SEG.estimate(vreq, RATES)


def _go_messages(path: str, body: bytes) -> list[Any]:
    doc = go_members(body)
    if path == "/v1/track":
        return [doc]
    batch = go_field(doc, "batch")
    return batch if isinstance(batch, list) else []


@props(examples(2000))
@given(request(), st.booleans())
def test_segment_enforces_what_a_go_reader_acts_on_or_refuses(req: tuple[str, bytes], scoped: bool) -> None:
    path, body = req
    policy = SCOPE if scoped else Policy()
    try:
        vreq, estimate = _decide(path, body, policy)
    except Denial as d:
        assert 400 <= d.status < 500, d
        event(f"refused {d.code}")
        return
    event("accepted")
    messages = _go_messages(path, body)
    assert estimate.sends == len(messages)  # what daily_send_cap counts is what Segment receives
    assert estimate.amount == 1000 * len(messages)
    if scoped:
        for m in messages:
            assert go_field(m, "event") in (None, "A"), body
            if path == "/v1/batch":
                assert go_field(m, "type") in (None, "track"), body  # no type: Segment drops it
    # The body's top-level write key (Segment authenticates with it) never reaches Segment, and
    # nothing else changes: the forwarded document is the one Keybrake decided on.
    forwarded = go_members(SEG.upstream_body(vreq, body))
    assert go_field(forwarded, "writeKey") is None and VAULT_KEY not in json.dumps(go_plain(forwarded))
    assert go_field(go_members(body), "writeKey") in (None, VAULT_KEY)  # another value is refused
    sent = go_plain(go_members(body))
    assert go_plain(forwarded) == {k: v for k, v in sent.items() if go_fold(k) != go_fold("writeKey")}
