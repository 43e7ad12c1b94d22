"""A refusal whose cause is a call's unknown amount says what its pre-flight lookup answered
(proxy/decisions.py lookup_hint, with_lookup, unpriced_note): a 404 is a wrong id, which no cap
reset helps — a newcomer's model waited for the reset of a cap that refused a refund of `pi_nope`.
"""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from keybrake.core.errors import STATUS, Denial
from keybrake.proxy.decisions import lookup_hint, unpriced_note, with_lookup
from keybrake.vendors.base import Estimate

OBJECTS = st.from_regex(r"(pi|ch|in)_[A-Za-z0-9]{1,24}", fullmatch=True)
LOOKUPS = st.one_of(
    st.none(),
    st.builds(lambda o, s: {"object": o, "path": f"/v1/x/{o}", "status": s, "ms": 1.0}, OBJECTS, st.integers(200, 599)),
    st.builds(
        lambda o, e: {"object": o, "path": f"/v1/x/{o}", "error": e},
        OBJECTS,
        st.sampled_from(["UpstreamUnreachable", "UpstreamForbidden", "UpstreamOutcomeUnknown"]),
    ),
)


@given(lookup=LOOKUPS)
def test_the_hint_says_what_the_lookup_answered(lookup: dict[str, Any] | None) -> None:
    hint = lookup_hint(lookup)
    if lookup is None or lookup.get("status") == 200:
        assert hint == ""  # no lookup, or it found the object: nothing to say
        return
    assert lookup["object"] in hint and hint.endswith(".")
    if lookup.get("status") == 404:
        assert hint == f"{lookup['object']} was not found at the vendor (404): check the id."
    else:
        assert str(lookup.get("status") or lookup["error"]) in hint and "failed" in hint


@given(lookup=LOOKUPS, code=st.sampled_from(sorted(STATUS)))
def test_only_a_refusal_for_an_unknown_amount_takes_the_hint(lookup: dict[str, Any] | None, code: str) -> None:
    denial = Denial(code, "Refused. Do not retry.")
    out = with_lookup(denial, lookup)
    if code == "unpriceable_request" and lookup_hint(lookup):
        assert out.message == f"{lookup_hint(lookup)} Refused. Do not retry." and out.code == code
    else:
        assert out is denial


@given(lookup=LOOKUPS, pricing=st.sampled_from(["free", "priced", "unpriceable"]), amount=st.integers(1, 10**9))
def test_a_cap_refusal_says_why_it_reserves_the_per_call_bound(
    lookup: dict[str, Any] | None, pricing: str, amount: int
) -> None:
    note = unpriced_note(Estimate(pricing, amount, "charge"), lookup)
    if pricing != "unpriceable":
        assert note == ""
        return
    assert note.startswith("Its amount cannot be known before it is sent, so it reserves the key's max_usd_per_call")
    assert note.endswith(lookup_hint(lookup) or ").")
