from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from keybrake.core.patterns import PatternError, parse_pattern


@pytest.mark.parametrize(
    ("pattern", "method", "path", "ok"),
    [
        ("POST /v1/payment_intents", "POST", ("v1", "payment_intents"), True),
        ("POST /v1/payment_intents", "GET", ("v1", "payment_intents"), False),
        ("POST /v1/payment_intents", "POST", ("v1", "Payment_Intents"), False),
        ("POST /v1/payment_intents/*/confirm", "POST", ("v1", "payment_intents", "pi_1", "confirm"), True),
        ("POST /v1/payment_intents/*/confirm", "POST", ("v1", "payment_intents", "confirm"), False),
        ("GET /v1/customers/*", "GET", ("v1", "customers", "search"), True),
        ("GET /v1/customers/cus_*", "GET", ("v1", "customers", "search"), False),
        ("GET /v1/customers/cus_*", "GET", ("v1", "customers", "cus_ABC"), True),
        ("GET /v1/customers/cus_*", "GET", ("v1", "customers", "cus_ABC", "sources"), False),
        ("* /v1/**", "DELETE", ("v1",), True),
        ("* /v1/**", "DELETE", ("v1", "a", "b", "c"), True),
        ("* /v1/**", "DELETE", ("v2", "a"), False),
        ("GET|POST /v1/charges", "POST", ("v1", "charges"), True),
        ("GET|POST /v1/charges", "DELETE", ("v1", "charges"), False),
        (
            "GET /2010-04-01/Accounts/*/Messages/*.json",
            "GET",
            ("2010-04-01", "Accounts", "AC1", "Messages", "SM1.json"),
            True,
        ),
    ],
)
def test_matching(pattern: str, method: str, path: tuple[str, ...], ok: bool) -> None:
    assert parse_pattern(pattern).matches(method, path) is ok


@pytest.mark.parametrize(
    "bad",
    [
        "/v1/charges",
        "POST  /v1/charges",
        "HEAD /v1/charges",
        "POST v1/charges",
        "POST /v1/**/x",
        "POST /v1/a**",
        "POST /v1//x",
        "POST /v1/../x",
        "post /v1/charges",
        "POST /v1/%2e",
    ],
)
def test_invalid_patterns(bad: str) -> None:
    with pytest.raises(PatternError):
        parse_pattern(bad)


segment = st.text(alphabet="abcXYZ_0-.", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))


@given(st.lists(segment, min_size=1, max_size=5), st.lists(segment, min_size=0, max_size=5))
def test_single_star_never_spans_segments(prefix: list[str], rest: list[str]) -> None:
    p = parse_pattern("GET /" + "/".join(prefix) + "/*")
    path = (*prefix, *rest)
    assert p.matches("GET", path) is (len(rest) == 1)


@given(st.lists(segment, min_size=1, max_size=5), st.lists(segment, min_size=0, max_size=5))
def test_double_star_matches_any_rest_under_prefix(prefix: list[str], rest: list[str]) -> None:
    p = parse_pattern("GET /" + "/".join(prefix) + "/**")
    assert p.matches("GET", (*prefix, *rest))
    if prefix:
        assert not p.matches("GET", (*prefix[:-1], prefix[-1] + "x", *rest))
