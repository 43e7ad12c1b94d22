"""One parse, generated (see tests/vendors/one_parse_gen.py), Twilio: form bodies built from every field
Twilio's pricing, scope or policy reads, with case, width, whitespace, repeat and query-versus-body
variants; Keybrake's parse either refuses with a 4xx or enforces exactly what a plain literal form
(tests/fakes/reference_parsers.py) would act on.

Examples per run: Twilio 3,000.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import quote_plus, urlencode

from hypothesis import event, given
from hypothesis import strategies as st

from keybrake.core.errors import Denial
from keybrake.core.names import fold
from keybrake.core.policy import ParamRule, Policy
from keybrake.vendors.twilio import ENFORCED as TWILIO_ENFORCED
from keybrake.vendors.twilio import REPEATABLE
from tests.fakes.reference_parsers import twilio_params
from tests.vendors.one_parse_gen import (
    ENCODING,
    FORM,
    PLACE,
    RATES,
    REPEAT,
    T,
    add_entry,
    join_entries,
    props,
    proxy_request,
    segments,
    spellings,
)

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
    for name in [f] * 16 + spellings(f)
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
    entries = [(e.split("=")[0], "body", e) for e in base if draw(REPEAT)]
    for _, key, value in draw(_TWILIO_VARIANTS):
        add_entry(draw, entries, key, draw(PLACE), f"{draw(ENCODING)(key)}={value}")
    entries = draw(st.permutations(entries))
    return path, join_entries(entries, "query"), join_entries(entries, "body")


def _twilio_decisions(path: str, query: str, body: str) -> Any:
    vreq = T.parse(proxy_request("POST", path, query, body.encode(), FORM), segments(path))
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
